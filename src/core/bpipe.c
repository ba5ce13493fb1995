/*
 * bpipe: a bounded ring of blocks consumed by a background thread (see
 * bpipe.h).  A mutex and one condition variable guard three counters:
 * taken (slots handed to the producer), queued (submitted) and done
 * (processed); slot i is buf[i % nslots].
 */
#include "bpipe.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "xalloc.h"

struct bpipe {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	int threaded, stopping, finished;
	int error; /* first errno from fn, 0 if none */

	bpipe_fn fn;
	void *ud;
	size_t nslots, slot_size;
	unsigned char **buf;
	size_t *len;
	unsigned long long taken, queued, done;
};

static void *worker(void *arg)
{
	struct bpipe *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		size_t i;
		int rc = 0;

		while (p->done == p->queued && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->done == p->queued)
			break;
		i = (size_t)(p->done % p->nslots);
		if (!p->error) {
			pthread_mutex_unlock(&p->mu);
			rc = p->fn(p->ud, p->buf[i], p->len[i]);
			pthread_mutex_lock(&p->mu);
			if (rc && !p->error)
				p->error = rc;
		}
		p->done++;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct bpipe *bpipe_start(size_t nslots, size_t slot_size, bpipe_fn fn, void *ud)
{
	struct bpipe *p = xcalloc(1, sizeof(*p));

	p->nslots = nslots < 2 ? 2 : nslots;
	p->slot_size = slot_size;
	p->fn = fn;
	p->ud = ud;
	p->buf = xcalloc(p->nslots, sizeof(*p->buf));
	p->len = xcalloc(p->nslots, sizeof(*p->len));
	for (size_t i = 0; i < p->nslots; i++)
		p->buf[i] = xmalloc(slot_size);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->threaded = pthread_create(&p->th, NULL, worker, p) == 0;
	return p;
}

void *bpipe_slot(struct bpipe *p)
{
	void *b;

	pthread_mutex_lock(&p->mu);
	/* the slot taken nslots ago must be done, and one more must stay
	 * untouched for a consumer still reading the previous buffer */
	while (p->threaded && p->taken - p->done >= p->nslots - 1)
		pthread_cond_wait(&p->cv, &p->mu);
	b = p->buf[p->taken % p->nslots];
	p->taken++;
	pthread_mutex_unlock(&p->mu);
	return b;
}

int bpipe_submit(struct bpipe *p, size_t len)
{
	size_t i = (size_t)(p->queued % p->nslots);
	int error;

	if (!p->threaded) {
		if (!p->error)
			p->error = p->fn(p->ud, p->buf[i], len);
		p->queued++;
		p->done++;
		error = p->error;
	} else {
		pthread_mutex_lock(&p->mu);
		p->len[i] = len;
		p->queued++;
		error = p->error;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	if (error) {
		errno = error;
		return -1;
	}
	return 0;
}

int bpipe_wait(struct bpipe *p)
{
	int error;

	pthread_mutex_lock(&p->mu);
	while (p->threaded && p->done != p->queued)
		pthread_cond_wait(&p->cv, &p->mu);
	error = p->error;
	pthread_mutex_unlock(&p->mu);
	if (error) {
		errno = error;
		return -1;
	}
	return 0;
}

int bpipe_finish(struct bpipe *p)
{
	if (p->threaded && !p->finished) {
		pthread_mutex_lock(&p->mu);
		p->stopping = 1;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->th, NULL);
	}
	p->finished = 1;
	if (p->error) {
		errno = p->error;
		return -1;
	}
	return 0;
}

void bpipe_free(struct bpipe *p)
{
	if (!p)
		return;
	bpipe_finish(p);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	for (size_t i = 0; i < p->nslots; i++)
		free(p->buf[i]);
	free(p->buf);
	free(p->len);
	free(p);
}
