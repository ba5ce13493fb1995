/*
 * progress: the progress line (see progress.h).  Redrawn at most five times
 * a second; the rate is the average since the start.
 */
#include "progress.h"

#include <stdio.h>
#include <unistd.h>

#include "cli.h"

void progress_init(struct progress *p, const char *label)
{
	p->label = label;
	p->enabled = !opt.no_progress && !opt.quiet && isatty(2);
	p->shown = 0;
	clock_gettime(CLOCK_MONOTONIC, &p->start);
	p->last = p->start;
}

static double secs(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void fmt_bytes(char *out, size_t n, double b)
{
	if (b >= 1024.0 * 1024 * 1024)
		snprintf(out, n, "%.2f GiB", b / (1024.0 * 1024 * 1024));
	else
		snprintf(out, n, "%.1f MiB", b / (1024.0 * 1024));
}

void progress_cb(void *ud, uint64_t done, uint64_t total)
{
	struct progress *p = ud;
	struct timespec now;
	char a[32], b[32], r[32];
	double el, rate;

	if (!p || !p->enabled)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (secs(&p->last, &now) < 0.2 && !(total && done >= total))
		return;
	p->last = now;
	el = secs(&p->start, &now);
	if (el < 0.5 && !p->shown)
		return; /* quick operations show nothing */
	rate = el > 0 ? (double)done / el : 0;
	fmt_bytes(a, sizeof(a), (double)done);
	fmt_bytes(r, sizeof(r), rate);
	if (total && done <= total && rate > 0) {
		long eta = (long)((double)(total - done) / rate);
		fmt_bytes(b, sizeof(b), (double)total);
		fprintf(stderr, "\r%s: %s / %s  %s/s  ETA %ld:%02ld   ", p->label, a, b, r,
			eta / 60, eta % 60);
	} else {
		fprintf(stderr, "\r%s: %s  %s/s   ", p->label, a, r);
	}
	fflush(stderr);
	p->shown = 1;
}

void progress_end(struct progress *p)
{
	if (p->shown) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
	}
	p->shown = 0;
}
