/*
 * cmd_crypt: the CLI side of snapshot encryption (snapshot_crypt.h):
 * loading the resolved --encrypt-key / --encrypt-to files into the snapshot
 * keyring before a command runs, the keygen command, and
 * what verify says about an encrypted snapshot.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "snapshot_crypt.h"

int crypt_setup_keys(const struct cmd_ctx *ctx, const char *key, const char *to,
		     const char *cipher, int require, struct sm_error *err)
{
	struct snap_key *k = NULL;

	if (!(ctx->cmd->needs & USES_SNAPSHOTS)) {
		if (opt.encrypt_key || opt.encrypt_to || opt.encrypt_cipher ||
		    opt.require_encryption)
			return err_set(err, ERR_USAGE, "'%s' reads and writes no snapshot: "
				       "--encrypt-key, --encrypt-to, --encrypt-cipher and "
				       "--require-encryption do not apply", ctx->cmd->name);
		return 0;
	}
	snap_keyring_require(require);
	if (cipher && snap_keyring_set_cipher(cipher, err) < 0)
		return -1;
	if (to && !key && (ctx->cmd->needs & RESTORES_OWN))
		return err_set(err, ERR_USAGE, "'%s' restores its own snapshot when the run fails: "
			       "with --encrypt-to it needs the private key too (--encrypt-key, "
			       "SAFE_MIGRATE_ENCRYPTION_KEY_FILE or encryption_key_file)",
			       ctx->cmd->name);
	if (key) {
		if (snap_key_load(key, 0, &k, err) < 0 || snap_keyring_add(k, err) < 0)
			return -1;
		/* without --encrypt-to, new snapshots are for this key */
		if (!to) {
			if (snap_key_load(key, 0, &k, err) < 0)
				return -1;
			snap_keyring_encrypt_to(k);
		}
	}
	if (to) {
		if (snap_key_load(to, 1, &k, err) < 0)
			return -1;
		snap_keyring_encrypt_to(k);
	}
	return 0;
}

void crypt_verify_report(struct cmd_ctx *ctx, const cJSON *manifest)
{
	const cJSON *enc = cJSON_GetObjectItemCaseSensitive(manifest, "encryption");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(enc, "key_id");
	const cJSON *cipher = cJSON_GetObjectItemCaseSensitive(enc, "cipher");
	int authenticated = enc && snap_keyring_count() > 0;

	if (ctx->json) {
		cJSON_AddBoolToObject(ctx->json, "encrypted", enc != NULL);
		cJSON_AddBoolToObject(ctx->json, "authenticated", !enc || authenticated);
		if (cJSON_IsString(id))
			cJSON_AddStringToObject(ctx->json, "key_id", id->valuestring);
	}
	if (!enc)
		return;
	if (authenticated)
		info("encrypted (%s, key id %s): every entry authenticated",
		     cJSON_IsString(cipher) ? cipher->valuestring : "?",
		     cJSON_IsString(id) ? id->valuestring : "?");
	else
		warning("the snapshot is encrypted (key id %s) and no key was given: its structure "
			"and checksums are good, but the entries were NOT authenticated (pass "
			"--encrypt-key FILE)", cJSON_IsString(id) ? id->valuestring : "?");
}

int cmd_keygen(struct cmd_ctx *ctx)
{
	struct snap_key *k = NULL;
	int code;

	if (!opt.output) {
		err_set(&ctx->err, ERR_USAGE, "keygen needs --output FILE");
		return report_error(ctx, &ctx->err);
	}
	if (snap_keygen(opt.output, opt.public_key, &ctx->err) < 0 ||
	    snap_key_load(opt.output, 0, &k, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	if (ctx->json) {
		cJSON_AddStringToObject(ctx->json, "key_file", opt.output);
		cJSON_AddStringToObject(ctx->json, "kind", snap_key_kind(k));
		cJSON_AddStringToObject(ctx->json, "key_id", snap_key_id(k));
		if (opt.public_key)
			cJSON_AddStringToObject(ctx->json, "public_key_file", opt.public_key);
	}
	out("%s key written to %s (mode 0600)\n", snap_key_kind(k), opt.output);
	if (opt.public_key)
		out("public key written to %s\n", opt.public_key);
	out("key id: %s\n", snap_key_id(k));
	snap_key_free(k);
	code = EXIT_OK;
	return code;
}
