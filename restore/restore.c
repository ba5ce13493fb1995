/*
 * restore: the engine-agnostic half of restoring a snapshot (see restore.h).
 *
 * Opens the snapshot, picks the driver by the header's engine, lets it load
 * into staging while the reader hashes everything, verifies the whole
 * snapshot, and only then (and after before_apply) lets the driver apply.
 * A snapshot streamed through stdin (restore_snapshot_fd) takes the same
 * path: the drivers stage or load in the one pass the stream allows.
 */
#include <string.h>

#include "restore.h"

/* One line per engine: adding an engine's restore is adding its driver here. */
static const struct restore_driver *const drivers[] = {
	&restore_sqlite_driver,
	&restore_pg_driver,
};

const struct restore_driver *restore_find_driver(const char *engine)
{
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (!strcmp(drivers[i]->engine, engine))
			return drivers[i];
	return NULL;
}

const char *restore_recorded_problems(const cJSON *extra)
{
	const cJSON *qc = cJSON_GetObjectItemCaseSensitive(extra, "quick_check");

	if (!cJSON_IsString(qc) || !*qc->valuestring || !strcmp(qc->valuestring, "ok"))
		return NULL;
	return qc->valuestring;
}

int restore_interrupted(const struct restore_opts *opts, struct sm_error *err)
{
	if (!opts->interrupted || !*opts->interrupted)
		return 0;
	return err_set(err, ERR_INTERRUPTED, "interrupted before the database was changed");
}

static int restore_from(struct snap_reader *r, struct engine *target,
			const struct restore_opts *opts, struct sm_error *err);

int restore_snapshot(const char *path, struct engine *target, const struct restore_opts *opts,
		     struct sm_error *err)
{
	struct snap_reader *r = NULL;

	if (snap_reader_open(path, &r, err) < 0)
		return -1;
	return restore_from(r, target, opts, err);
}

int restore_snapshot_fd(int fd, const char *label, const char *sha256, struct engine *target,
			const struct restore_opts *opts, struct sm_error *err)
{
	struct snap_reader *r = NULL;

	if (snap_reader_open_fd(fd, label, sha256, &r, err) < 0)
		return -1;
	return restore_from(r, target, opts, err);
}

/* Takes r (closes it). */
static int restore_from(struct snap_reader *r, struct engine *target,
			const struct restore_opts *opts, struct sm_error *err)
{
	static const struct restore_opts no_opts;
	const char *path = snap_reader_path(r);
	const struct restore_driver *d;
	const cJSON *engine;
	void *state = NULL;
	int ret = -1;

	if (!opts)
		opts = &no_opts;
	/* before anything else (a safety snapshot, a confirmation): without
	 * its key, nothing of an encrypted snapshot can be restored */
	if (snap_reader_decrypts(r) < 0) {
		err_set(err, ERR_FAIL, "snapshot '%s' is encrypted (key id %.16s...): give its key "
			"with --encrypt-key FILE; nothing was restored", path, snap_reader_key_id(r));
		goto out;
	}
	if (opts->progress)
		snap_reader_set_progress(r, opts->progress, opts->progress_ud);
	snap_reader_set_interrupt(r, opts->interrupted);
	engine = cJSON_GetObjectItemCaseSensitive(snap_reader_header(r), "engine");
	if (!cJSON_IsString(engine)) {
		err_set(err, ERR_DAMAGED, "snapshot '%s' does not name its engine", path);
		goto out;
	}
	if (strcmp(engine->valuestring, target->ops->name) != 0) {
		err_set(err, ERR_USAGE, "snapshot '%s' is of a %s database; cannot restore it "
			"into %s", path, engine->valuestring, target->ops->display_name);
		goto out;
	}
	d = restore_find_driver(engine->valuestring);
	if (!d) {
		err_set(err, ERR_FAIL, "restoring %s snapshots is not supported in this build",
			target->ops->display_name);
		goto out;
	}
	if (d->load(target, r, opts, &state, err) < 0)
		goto discard;
	/* everything read so far is untrusted until this succeeds; a driver
	 * that verifies while applying checks it all (the file against its
	 * sidecar too) before it commits, in the one pass it streams */
	if (!d->verifies_in_apply && snap_reader_finish(r, err) < 0)
		goto discard;
	if (restore_interrupted(opts, err) < 0 ||
	    (opts->before_apply && opts->before_apply(opts->ud, snap_reader_manifest(r),
						      snap_reader_header(r), err) < 0) ||
	    restore_interrupted(opts, err) < 0)
		goto discard;
	ret = d->apply(target, state, snap_reader_manifest(r), opts, err);
discard:
	d->discard(state);
out:
	snap_reader_close(r);
	return ret;
}
