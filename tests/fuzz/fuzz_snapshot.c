/*
 * libFuzzer harness: reading and verifying snapshots.
 * Invariant: whatever the bytes, snap_verify and a streaming read return
 * (no crash, no leak, no hang), and a file that verifies has a manifest.
 * The input is written to a temp file; its SHA-256 goes into the sidecar
 * so that the fuzzer gets past the whole-file check into the archive.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "hash.h"
#include "snapshot.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A plain write: fsync per input would make the fuzzer crawl. */
static int put(const char *p, const void *d, size_t n)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc;

	if (fd < 0)
		return -1;
	rc = fs_write_all(fd, d, n);
	close(fd);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64], side[80];
	struct sm_error err = SM_ERROR_INIT;
	struct snap_problems pr = SNAP_PROBLEMS_INIT;
	struct snap_reader *r = NULL;
	struct strbuf line = STRBUF_INIT;
	char hex[HASH_HEX_LEN + 1];
	cJSON *m = NULL;

	if (!path[0]) {
		snprintf(path, sizeof(path), "/tmp/fuzz-snap-%ld.tar.zst", (long)getpid());
		snprintf(side, sizeof(side), "%s%s", path, SNAP_SHA_SUFFIX);
	}
	if (put(path, data, size) < 0)
		return 0;
	hash_buf_hex(data, size, hex);
	sb_addf(&line, "%s  %s\n", hex, fs_basename(path));
	put(side, line.buf, line.len);
	sb_release(&line);

	if (snap_verify(path, &pr, &m, &err) == 0 && pr.n == 0 && !m)
		__builtin_trap();
	cJSON_Delete(m);
	snap_problems_release(&pr);

	if (snap_reader_open(path, &r, &err) == 0) {
		struct snap_entry ent;
		unsigned char buf[4096];
		size_t got;

		while (snap_reader_next(r, &ent, &err) > 0) {
			do {
				if (snap_reader_read(r, buf, sizeof(buf), &got, &err) < 0)
					break;
			} while (got);
		}
		snap_reader_finish(r, &err);
		snap_reader_close(r);
	}
	return 0;
}
