/*
 * libFuzzer harness: the INI config reader (through a temp file, as the
 * real reader takes a path).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	struct cfg_file c;
	struct sm_error err = SM_ERROR_INIT;
	FILE *f;

	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/sm-fuzz-config-%ld.ini", (long)getpid());
	f = fopen(path, "w");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	if (cfg_load(path, &c, &err) == 0)
		cfg_release(&c);
	return 0;
}
