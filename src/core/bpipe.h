/*
 * bpipe: a bounded ring of blocks consumed in order by one background thread.
 *
 * Snapshots are hashed twice (each entry, and the whole compressed file)
 * and written or read in the same pass; on a small machine SHA-256 and the
 * system calls are as costly as the compression.  A bpipe moves one of
 * those stages (hashing and writing the compressed output, or hashing the
 * compressed input) to its own thread, with memory bounded by the ring:
 *
 *     buf = bpipe_slot(p);        waits until the slot's last use is done
 *     fill buf (read into it, or copy into it)
 *     bpipe_submit(p, len);       the thread calls fn(ud, buf, len) later
 *     ...
 *     bpipe_wait(p);              waits for everything queued so far
 *     ...
 *     bpipe_finish(p);            waits for everything, stops the thread
 *
 * A slot's buffer stays untouched until nslots - 1 more slots have been
 * taken, so a reader may hand it out (libarchive keeps a read buffer only
 * until its next read).  fn returns 0 or an errno value; after a failure
 * later blocks are dropped and submit and finish return -1 with that errno.
 * One producer thread.  If the thread cannot be started, blocks are
 * processed at submit, in the caller's thread: slower, never wrong.
 */
#ifndef SM_BPIPE_H
#define SM_BPIPE_H

#include <stddef.h>

typedef int (*bpipe_fn)(void *ud, const void *buf, size_t len);

struct bpipe;

/* Starts a pipe of nslots (>= 2) buffers of slot_size bytes each. */
struct bpipe *bpipe_start(size_t nslots, size_t slot_size, bpipe_fn fn, void *ud);
/* The next free buffer (slot_size bytes), after waiting for it. */
void *bpipe_slot(struct bpipe *p);
/* Queues the first len bytes of the buffer bpipe_slot returned.  Returns 0,
 * or -1 with errno set if an earlier block failed. */
int bpipe_submit(struct bpipe *p, size_t len);
/* Waits until every queued block is done; the thread goes on, and the
 * producer may take slots again.  Returns 0, or -1 with errno set if a
 * block failed. */
int bpipe_wait(struct bpipe *p);
/* Waits until every queued block is done and stops the thread.  Returns 0,
 * or -1 with errno set if a block failed.  Idempotent. */
int bpipe_finish(struct bpipe *p);
/* Finishes (ignoring failures) and frees.  NULL-safe. */
void bpipe_free(struct bpipe *p);

#endif
