/*
 * unit_tmpdir: removing a unit test's scratch directory tree, in process
 * (nftw, depth first, links not followed) rather than by spawning rm.
 * Include first in the test file: it needs nftw's feature-test macro.
 */
#ifndef SM_UNIT_TMPDIR_H
#define SM_UNIT_TMPDIR_H

#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static int unit_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Removes dir and everything below it; 0 or -1. */
static inline int unit_remove_tree(const char *dir)
{
	return nftw(dir, unit_remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

#endif
