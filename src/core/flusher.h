/*
 * flusher: makes a large file durable while it is still being written.
 *
 * Writing a file and then calling fsync leaves all of the device work for
 * the end: the caller waits for every byte to reach stable storage.  On a
 * virtual disk that wait is the host writing back everything at once, and
 * it is a quarter of a second per half gigabyte.  A flusher spreads it out:
 * it asks the kernel to start writeback every FLUSHER_KICK bytes
 * (sync_file_range) and runs fdatasync in a thread of its own every step
 * bytes, so the device works while the writer goes on and the closing fsync
 * has only the last step left.
 *
 *     fl = flusher_start(fd, offset of the first write, step);
 *     write...; flusher_wrote(fl, offset just past the last byte written);
 *     ...
 *     if (flusher_finish(fl) < 0) the file is not durable (errno says why)
 *     fsync(fd);   the caller's own, as before: the flusher is an
 *                  optimisation, never the guarantee
 *     flusher_free(fl);
 *
 * A background flush that fails fails the file: after a failed fdatasync
 * Linux may report success for the next one although the data never
 * arrived.  flusher_wrote and flusher_finish are called from one thread
 * (the writer's); the flusher's own thread only runs fdatasync.  The thread
 * starts at the first step, so small files never start one.
 */
#ifndef SM_FLUSHER_H
#define SM_FLUSHER_H

#include <stdint.h>

/* Writeback is started for every FLUSHER_KICK bytes written. */
#define FLUSHER_KICK ((uint64_t)8 << 20)
/* The step safe-migrate uses for snapshots and restored files. */
#define FLUSHER_STEP ((uint64_t)32 << 20)

struct flusher;

/* A flusher for fd (borrowed; it must stay open until flusher_finish),
 * written in increasing order from offset from.  step 0: only start
 * writeback, never fdatasync in the background. */
struct flusher *flusher_start(int fd, uint64_t from, uint64_t step);
/* The file now holds the data written from `from` up to end.  Never waits
 * for the device. */
void flusher_wrote(struct flusher *f, uint64_t end);
/* Waits for a background flush in progress and stops the thread (one
 * requested but not begun is left to the caller's fsync).  Returns
 * 0, or -1 with errno set if a background flush failed.  Idempotent;
 * NULL-safe (returns 0). */
int flusher_finish(struct flusher *f);
/* Finishes (ignoring failures) and frees.  NULL-safe. */
void flusher_free(struct flusher *f);

#endif
