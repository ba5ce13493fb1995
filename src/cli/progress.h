/*
 * progress: a one-line progress display (bytes, rate, ETA) on stderr for
 * long operations.  Shown only when stderr is a TTY and neither
 * --no-progress nor --quiet was given.  progress_cb has the shape of
 * snap_progress_fn so it plugs into backup, restore and the snapshot reader.
 */
#ifndef SM_PROGRESS_H
#define SM_PROGRESS_H

#include <stdint.h>
#include <time.h>

struct progress {
	const char *label; /* borrowed */
	int enabled;
	int shown;
	struct timespec start, last;
};

void progress_init(struct progress *p, const char *label);
/* ud is a struct progress *. */
void progress_cb(void *ud, uint64_t done, uint64_t total);
/* Clears the line if anything was shown. */
void progress_end(struct progress *p);

#endif
