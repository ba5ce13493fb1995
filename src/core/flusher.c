/*
 * flusher: background fdatasync of a file being written (see flusher.h).
 * A mutex and a condition variable guard a request flag; requests that
 * arrive while a flush runs are folded into the next one, which covers
 * everything written by then.
 */
#include "flusher.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "fsutil.h"
#include "xalloc.h"

struct flusher {
	int fd;
	uint64_t step;
	uint64_t kicked;    /* writeback started up to here */
	uint64_t requested; /* a flush was requested when the file ended here */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	int threaded, pending, stopping;
	int error; /* first errno of a background flush, 0 if none */
};

static void *flush_thread(void *arg)
{
	struct flusher *f = arg;

	pthread_mutex_lock(&f->mu);
	for (;;) {
		int rc, saved;

		while (!f->pending && !f->stopping)
			pthread_cond_wait(&f->cv, &f->mu);
		if (!f->pending)
			break;
		f->pending = 0;
		pthread_mutex_unlock(&f->mu);
		rc = fdatasync(f->fd);
		saved = errno;
		pthread_mutex_lock(&f->mu);
		if (rc < 0 && !f->error)
			f->error = saved ? saved : EIO;
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

struct flusher *flusher_start(int fd, uint64_t from, uint64_t step)
{
	struct flusher *f = xcalloc(1, sizeof(*f));

	f->fd = fd;
	f->step = step;
	f->kicked = f->requested = from;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	return f;
}

static void request_flush(struct flusher *f)
{
	pthread_mutex_lock(&f->mu);
	if (!f->threaded && !f->stopping)
		f->threaded = pthread_create(&f->th, NULL, flush_thread, f) == 0;
	/* without a thread the caller's closing fsync does all of it */
	f->pending = f->threaded;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

void flusher_wrote(struct flusher *f, uint64_t end)
{
	if (end - f->kicked >= FLUSHER_KICK) {
		fs_start_writeback(f->fd, (off_t)f->kicked, (off_t)(end - f->kicked));
		f->kicked = end;
	}
	if (f->step && end - f->requested >= f->step) {
		f->requested = end;
		request_flush(f);
	}
}

int flusher_finish(struct flusher *f)
{
	int error;

	if (!f)
		return 0;
	pthread_mutex_lock(&f->mu);
	/* a flush not yet begun is left to the caller's closing fsync */
	f->pending = 0;
	f->stopping = 1;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
	if (f->threaded) {
		pthread_join(f->th, NULL);
		f->threaded = 0;
	}
	error = f->error;
	if (error) {
		errno = error;
		return -1;
	}
	return 0;
}

void flusher_free(struct flusher *f)
{
	if (!f)
		return;
	flusher_finish(f);
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	free(f);
}
