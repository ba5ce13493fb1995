/*
 * libFuzzer harness: the snapshot reader and manifest parser, through
 * snap_verify on a file holding the input (and a matching .sha256, so the
 * checks past the whole-file checksum are reached too).  Whatever the bytes,
 * verify must return without crashing, and a "good" verdict must come with
 * a manifest.
 */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "hash.h"
#include "snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64], sums[80];
	struct snap_problems probs = SNAP_PROBLEMS_INIT;
	struct sm_error err = SM_ERROR_INIT;
	char hex[HASH_HEX_LEN + 1];
	cJSON *manifest = NULL;
	FILE *f;

	if (!path[0]) {
		snprintf(path, sizeof(path), "/tmp/sm-fuzz-snap-%ld.tar.zst", (long)getpid());
		snprintf(sums, sizeof(sums), "%s.sha256", path);
	}
	f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	hash_buf_hex(data, size, hex);
	f = fopen(sums, "w");
	if (!f)
		return 0;
	fprintf(f, "%s  %s\n", hex, path + 5);
	fclose(f);
	if (snap_verify(path, &probs, &manifest, &err) == 0 && probs.n == 0 && !manifest)
		__builtin_trap();
	cJSON_Delete(manifest);
	snap_problems_release(&probs);
	return 0;
}
