#!/usr/bin/env python3
"""Encryption at rest (issue 20, section 3; docs/encryption.md).

Round trips with a secret key and with X25519, a wrong key, a changed byte,
an attacker who rewrites the archive and its checksums consistently (a
changed record, a dropped final record, an edited manifest), a truncated
file, key file modes, owners and links, the manifest never holding key bytes,
an old (format 2) snapshot, the pipeline with encryption configured, the
records' compression level, --require-encryption (restore, restore -, verify,
recover), and a wrong key, a tampered record and truncation of a snapshot
streamed through `restore -` and of a PostgreSQL snapshot restored in place.
Every refusal is checked to leave the database as it was.
"""
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from smtest import BIN, CliTest, FIXTURES, Result, compress_to, main  # noqa: E402

MARKER = "plaintext-marker-7f3a"


def records(data):
    """A sealed entry as (its plaintext size prefix, [sealed records])."""
    out, at = [], 8
    while at < len(data):
        n = int.from_bytes(data[at:at + 4], "big")
        out.append(data[at + 4:at + 4 + n])
        at += 4 + n
    return data[:8], out


def sealed(prefix, recs):
    return prefix + b"".join(len(r).to_bytes(4, "big") + r for r in recs)


def read_tar(path):
    """[(name, bytes)] of a snapshot, in archive order."""
    raw = subprocess.run(["zstd", "-q", "-d", "-c", path], capture_output=True,
                         check=True).stdout
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        for ti in t.getmembers():
            out.append((ti.name, t.extractfile(ti).read()))
    return out


def rewrite(path, change):
    """What someone without the key can do: change the entries (change(list)
    edits [(name, bytes)] in place), then make the manifest's sizes and
    checksums and the sidecar agree again."""
    entries = read_tar(path)
    change(entries)
    manifest = json.loads(dict(entries)["manifest.json"])
    listed = {e["name"]: e for e in manifest["entries"]}
    for name, data in entries:
        if name in listed:
            listed[name]["size"] = len(data)
            listed[name]["sha256"] = hashlib.sha256(data).hexdigest()
    mtext = json.dumps(manifest, indent="\t").encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries:
            if name == "manifest.json":
                data = mtext
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o600
            t.addfile(ti, io.BytesIO(data))
    compress_to(path, raw.getvalue())


def from_stdin(test, stdin_path, *args, env=None):
    """Runs the binary with stdin read from stdin_path (`restore -`, `verify -`)."""
    e = dict(test.env)
    if env:
        e.update(env)
    with open(stdin_path, "rb") as fin:
        p = subprocess.run([BIN] + [str(a) for a in args], cwd=test.dir, env=e, stdin=fin,
                           capture_output=True, timeout=300)
    p.stdout, p.stderr = p.stdout.decode(), p.stderr.decode()
    return Result(p)


def flip_second_record(test, entries):
    """Changes one bit inside the second record of the first multi-record
    data chunk (a rewrite() change)."""
    for i, (name, data) in enumerate(entries):
        if name.startswith("data/"):
            prefix, recs = records(data)
            if len(recs) > 2:
                r = bytearray(recs[1])
                r[100] ^= 1
                recs[1] = bytes(r)
                entries[i] = (name, sealed(prefix, recs))
                return
    test.fail("no data chunk of several records")


class EncryptSqlite(CliTest):
    def setUp(self):
        super().setUp()
        con = sqlite3.connect(self.path("app.db"))
        con.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);")
        # several records (256 KiB each) of data, and a marker to look for
        con.executemany("INSERT INTO t(v) VALUES (?)",
                        [("%s-%05d-%s" % (MARKER, i, os.urandom(30).hex()),)
                         for i in range(8000)])
        con.commit()
        con.close()
        self.a = ["-d", self.sqlite_url(), "-b", self.path("bk")]
        self.key = self.keygen("k.key")

    def keygen(self, name, public=None):
        args = ["--json", "keygen", "--output", self.path(name)]
        if public:
            args += ["--public", self.path(public)]
        return self.ok(*args).json()["key_id"]

    def backup(self, name, *extra):
        self.ok(*self.a, "backup", "--name", name, *extra)
        return self.path("bk", name + ".tar.zst")

    def assert_untouched(self, before):
        self.assertEqual(self.sqlite_dump(), before)

    def test_round_trip_secret_key(self):
        snap = self.backup("s1", "--encrypt-key", self.path("k.key"))
        entries = dict(read_tar(snap))
        header = json.loads(entries["snapshot.json"])
        self.assertEqual(header["format_version"], 3)
        self.assertEqual(header["encryption"]["cipher"], "aes-256-gcm")
        self.assertEqual(header["encryption"]["key_id"], self.key)
        manifest = json.loads(entries["manifest.json"])
        self.assertEqual(manifest["encryption"], header["encryption"])
        # the data is not readable without the key
        for name, data in entries.items():
            self.assertNotIn(MARKER.encode(), data, name)
        r = self.ok("--json", "verify", snap, "--encrypt-key", self.path("k.key"))
        self.assertTrue(r.json()["authenticated"])
        self.assertTrue(r.json()["encrypted"])
        self.ok(*self.a, "restore", snap, "--to", self.sqlite_url("copy.db"),
                "--encrypt-key", self.path("k.key"), "--yes")
        self.assertEqual(self.sqlite_dump("copy.db"), self.sqlite_dump())

    def test_manifest_never_holds_key_bytes(self):
        self.keygen("x.pem", "x.pub")
        with open(self.path("k.key")) as f:
            secret = f.read().strip()
        with open(self.path("x.pem")) as f:
            pem_body = "".join(l for l in f.read().splitlines() if not l.startswith("-----"))
        for i, args in enumerate((["--encrypt-key", self.path("k.key")],
                                  ["--encrypt-to", self.path("x.pub")])):
            snap = self.backup("m%d" % i, *args)
            blob = b"".join(d for _, d in read_tar(snap))
            with open(snap, "rb") as f:
                blob += f.read()
            for needle in (secret.encode(), bytes.fromhex(secret), pem_body.encode()):
                self.assertNotIn(needle, blob)

    def test_round_trip_x25519_without_the_private_key_on_the_host(self):
        xid = self.keygen("x.pem", "x.pub")
        snap = self.backup("x1", "--encrypt-to", self.path("x.pub"))
        header = json.loads(dict(read_tar(snap))["snapshot.json"])
        self.assertEqual(header["encryption"]["mode"], "x25519")
        self.assertEqual(header["encryption"]["key_id"], xid)
        self.assertEqual(len(header["encryption"]["ephemeral_public_key"]), 64)
        # without a key: the structure and the checksums only, and it says so
        r = self.ok("--json", "verify", snap)
        self.assertFalse(r.json()["authenticated"])
        self.assertIn("NOT authenticated", r.err)
        # restoring needs the private key; nothing is created without it
        r = self.code(1, *self.a, "restore", snap, "--to", self.sqlite_url("no.db"), "--yes")
        self.assertIn("give its key with --encrypt-key", r.err)
        self.assertFalse(os.path.exists(self.path("no.db")))
        r = self.ok("--json", "verify", snap, "--encrypt-key", self.path("x.pem"))
        self.assertTrue(r.json()["authenticated"])
        self.ok(*self.a, "restore", snap, "--to", self.sqlite_url("copy.db"),
                "--encrypt-key", self.path("x.pem"), "--yes")
        self.assertEqual(self.sqlite_dump("copy.db"), self.sqlite_dump())
        # each snapshot has its own ephemeral key
        snap2 = self.backup("x2", "--encrypt-to", self.path("x.pub"))
        h2 = json.loads(dict(read_tar(snap2))["snapshot.json"])
        self.assertNotEqual(h2["encryption"]["ephemeral_public_key"],
                            header["encryption"]["ephemeral_public_key"])
        self.assertNotEqual(h2["encryption"]["salt"], header["encryption"]["salt"])

    def test_chacha20_poly1305(self):
        snap = self.backup("ch", "--encrypt-key", self.path("k.key"),
                           "--encrypt-cipher", "chacha20-poly1305")
        self.assertEqual(json.loads(dict(read_tar(snap))["snapshot.json"])["encryption"]["cipher"],
                         "chacha20-poly1305")
        r = self.ok("--json", "verify", snap, "--encrypt-key", self.path("k.key"))
        self.assertTrue(r.json()["authenticated"])
        self.ok(*self.a, "restore", snap, "--to", self.sqlite_url("c.db"), "--yes",
                "--encrypt-key", self.path("k.key"))
        self.assertEqual(self.sqlite_dump("c.db"), self.sqlite_dump())
        r = self.code(2, *self.a, "backup", "--encrypt-key", self.path("k.key"),
                      "--encrypt-cipher", "rot13")
        self.assertIn("unknown cipher 'rot13'", r.err)
        r = self.code(2, *self.a, "current", "--encrypt-key", self.path("k.key"))
        self.assertIn("reads and writes no snapshot", r.err)

    def test_environment_and_config(self):
        env = {"SAFE_MIGRATE_ENCRYPTION_KEY_FILE": self.path("k.key")}
        self.ok(*self.a, "backup", "--name", "e1", env=env)
        snap = self.path("bk", "e1.tar.zst")
        self.assertEqual(json.loads(dict(read_tar(snap))["snapshot.json"])["encryption"]["key_id"],
                         self.key)
        self.ok("verify", snap, env=env)
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n"
                   "backup_dir = bk\nencryption_key_file = k.key\n")
        self.ok("backup", "--name", "c1")
        snap = self.path("bk", "c1.tar.zst")
        self.assertEqual(json.loads(dict(read_tar(snap))["snapshot.json"])["encryption"]["key_id"],
                         self.key)
        r = self.ok("--json", "verify", snap)
        self.assertTrue(r.json()["authenticated"])

    def test_wrong_key_is_refused_before_anything_is_restored(self):
        snap = self.backup("w1", "--encrypt-key", self.path("k.key"))
        self.keygen("other.key")
        self.sqlite("INSERT INTO t(v) VALUES ('after the snapshot')")
        before = self.sqlite_dump()
        r = self.code(1, *self.a, "restore", snap, "--encrypt-key", self.path("other.key"),
                      "--yes", "--no-safety-backup")
        self.assertIn("encrypted with another key", r.err)
        self.assert_untouched(before)
        r = self.code(1, "verify", snap, "--encrypt-key", self.path("other.key"))
        self.assertIn("encrypted with another key", r.err)
        # nor with no key at all
        self.code(1, *self.a, "restore", snap, "--yes", "--no-safety-backup")
        self.assert_untouched(before)

    def test_changed_byte_is_refused(self):
        snap = self.backup("b1", "--encrypt-key", self.path("k.key"))
        before = self.sqlite_dump()
        self.sqlite("INSERT INTO t(v) VALUES ('after the snapshot')")
        before = self.sqlite_dump()
        with open(snap, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0x40]))
        self.code(7, "verify", snap, "--encrypt-key", self.path("k.key"))
        r = self.run_sm(*self.a, "restore", snap, "--encrypt-key", self.path("k.key"), "--yes",
                        "--no-safety-backup")
        self.assertNotEqual(r.code, 0, r)
        self.assert_untouched(before)

    def test_resealed_tampered_record_fails_authentication(self):
        snap = self.backup("t1", "--encrypt-key", self.path("k.key"))

        def flip(entries):
            for i, (name, data) in enumerate(entries):
                if name == "data/main.db.0001":
                    prefix, recs = records(data)
                    self.assertGreater(len(recs), 2)
                    r = bytearray(recs[1])
                    r[100] ^= 1  # inside the second record
                    recs[1] = bytes(r)
                    entries[i] = (name, sealed(prefix, recs))
        rewrite(snap, flip)
        self.sqlite("INSERT INTO t(v) VALUES ('after the snapshot')")
        before = self.sqlite_dump()
        # without the key, the consistent rewrite passes: only the key can tell
        r = self.ok("--json", "verify", snap)
        self.assertFalse(r.json()["authenticated"])
        r = self.code(7, "verify", snap, "--encrypt-key", self.path("k.key"))
        self.assertIn("fails authentication", r.out)
        r = self.run_sm(*self.a, "restore", snap, "--encrypt-key", self.path("k.key"), "--yes",
                        "--no-safety-backup")
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("fails authentication", r.err)
        self.assert_untouched(before)

    def test_resealed_truncation_and_moved_records_fail(self):
        snap = self.backup("c1", "--encrypt-key", self.path("k.key"))
        good = read_tar(snap)

        def drop_final(entries):
            for i, (name, data) in enumerate(entries):
                if name == "data/main.db.0001":
                    prefix, recs = records(data)
                    entries[i] = (name, sealed(prefix, recs[:-1]))

        def swap(entries):
            for i, (name, data) in enumerate(entries):
                if name == "data/main.db.0001":
                    prefix, recs = records(data)
                    entries[i] = (name, sealed(prefix, [recs[1], recs[0]] + recs[2:]))

        def rename(entries):
            # another entry's record under this entry's name: bound to its name
            d = dict(entries)
            for i, (name, data) in enumerate(entries):
                if name == "data/main.db.0000":
                    prefix, _ = records(data)
                    entries[i] = (name, sealed(prefix, records(d["data/main.db.0001"])[1][:1]))
        for change in (drop_final, swap, rename):
            with self.subTest(change=change.__name__):
                rewrite(snap, lambda e: (e.clear(), e.extend(good)))
                rewrite(snap, change)
                r = self.code(7, "verify", snap, "--encrypt-key", self.path("k.key"))
                self.assertIn("fails authentication", r.out)
                self.code(7, *self.a, "restore", snap, "--to", self.sqlite_url("x.db"),
                          "--encrypt-key", self.path("k.key"), "--yes")
                self.assertFalse(os.path.exists(self.path("x.db")))

    def test_rewritten_manifest_fails_authentication(self):
        snap = self.backup("r1", "--encrypt-key", self.path("k.key"))

        def edit(entries):
            for i, (name, data) in enumerate(entries):
                if name == "manifest.json":
                    m = json.loads(data)
                    m["row_counts"]["t"] = 1
                    entries[i] = (name, json.dumps(m).encode())
        rewrite(snap, edit)
        self.ok("verify", snap)
        r = self.code(7, "verify", snap, "--encrypt-key", self.path("k.key"))
        self.assertIn("the manifest fails authentication", r.out)

        # a header stripped of its encryption (to have sealed bytes taken as data)
        snap = self.backup("r2", "--encrypt-key", self.path("k.key"))

        def strip(entries):
            for i, (name, data) in enumerate(entries):
                if name == "snapshot.json":
                    h = json.loads(data)
                    del h["encryption"]
                    entries[i] = (name, json.dumps(h).encode())
        rewrite(snap, strip)
        # (refused by whichever check sees it first: the sizes, or the encryption itself)
        r = self.code(7, "verify", snap)
        self.assertIn("damaged", r.out)
        self.code(7, *self.a, "restore", snap, "--to", self.sqlite_url("s.db"), "--yes")
        self.assertFalse(os.path.exists(self.path("s.db")))

    def test_truncated_file_is_refused(self):
        snap = self.backup("f1", "--encrypt-key", self.path("k.key"))
        self.sqlite("INSERT INTO t(v) VALUES ('after the snapshot')")
        before = self.sqlite_dump()
        size = os.path.getsize(snap)
        os.truncate(snap, size // 2)
        self.code(7, "verify", snap, "--encrypt-key", self.path("k.key"))
        r = self.run_sm(*self.a, "restore", snap, "--encrypt-key", self.path("k.key"), "--yes",
                        "--no-safety-backup")
        self.assertNotEqual(r.code, 0, r)
        self.assert_untouched(before)

    def test_key_file_modes_and_links(self):
        os.chmod(self.path("k.key"), 0o644)
        r = self.code(2, *self.a, "backup", "--encrypt-key", self.path("k.key"))
        self.assertIn("mode 0644", r.err)
        self.assertIn("0600", r.err)
        os.chmod(self.path("k.key"), 0o640)
        self.code(2, *self.a, "backup", "--encrypt-key", self.path("k.key"))
        os.chmod(self.path("k.key"), 0o400)
        self.ok(*self.a, "backup", "--encrypt-key", self.path("k.key"))
        os.chmod(self.path("k.key"), 0o600)
        os.symlink(self.path("k.key"), self.path("link.key"))
        r = self.code(2, *self.a, "backup", "--encrypt-key", self.path("link.key"))
        self.assertIn("symbolic link", r.err)
        # the environment's key file is checked the same way
        os.chmod(self.path("k.key"), 0o604)
        self.code(2, *self.a, "backup", env={"SAFE_MIGRATE_ENCRYPTION_KEY_FILE":
                                             self.path("k.key")})
        # garbage is not a key; keygen never replaces a file
        os.chmod(self.path("k.key"), 0o600)
        self.write("bad.key", "not a key\n")
        os.chmod(self.path("bad.key"), 0o600)
        r = self.code(2, *self.a, "backup", "--encrypt-key", self.path("bad.key"))
        self.assertIn("neither a secret key", r.err)
        self.code(1, "keygen", "--output", self.path("k.key"))
        self.assertEqual(os.stat(self.path("k.key")).st_mode & 0o777, 0o600)

    def test_key_rotation(self):
        old = self.backup("old", "--encrypt-key", self.path("k.key"))
        new_id = self.keygen("new.key")
        new = self.backup("new", "--encrypt-key", self.path("new.key"))
        self.assertEqual(json.loads(dict(read_tar(new))["snapshot.json"])["encryption"]["key_id"],
                         new_id)
        # the old snapshot keeps its key id: the new key is refused, naming it
        r = self.code(1, "verify", old, "--encrypt-key", self.path("new.key"))
        self.assertIn(self.key[:16], r.err)
        r = self.ok("--json", "verify", old)
        self.assertEqual(r.json()["key_id"], self.key)
        self.ok("verify", old, "--encrypt-key", self.path("k.key"))
        self.ok(*self.a, "restore", old, "--to", self.sqlite_url("o.db"), "--yes",
                "--encrypt-key", self.path("k.key"))
        self.assertEqual(self.sqlite_dump("o.db"), self.sqlite_dump())
        # both are listed as good snapshots
        r = self.ok(*self.a, "--json", "list-backups")
        self.assertEqual(sorted(os.path.basename(x["path"]) for x in r.json()["snapshots"]
                                if not x.get("damaged")), ["new.tar.zst", "old.tar.zst"])

    def test_old_format_snapshot_still_restores(self):
        old = os.path.join(FIXTURES, "snapshot_v2", "v2_sqlite.tar.zst")
        self.assertEqual(json.loads(dict(read_tar(old))["snapshot.json"])["format_version"], 2)
        # with a key configured too: an unencrypted snapshot needs none
        for args in ([], ["--encrypt-key", self.path("k.key")]):
            with self.subTest(args=args):
                r = self.ok("--json", "verify", old, *args)
                self.assertFalse(r.json()["encrypted"])
                if os.path.exists(self.path("old.db")):
                    os.unlink(self.path("old.db"))
                self.ok(*self.a, "restore", old, "--to", self.sqlite_url("old.db"), "--yes",
                        *args)
                self.assertEqual(self.sqlite("SELECT v FROM t ORDER BY id", "old.db"),
                                 [("old-format-row-1",), ("old-format-row-2",)])

    def test_key_file_owned_by_another_user_is_refused(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to give the key file to another user (uid 65534)")
        os.chown(self.path("k.key"), 65534, 65534)
        self.assertEqual(os.stat(self.path("k.key")).st_mode & 0o777, 0o600)
        for cmd in (["backup"], ["verify", self.path("nothing.tar.zst")]):
            with self.subTest(cmd=cmd[0]):
                r = self.code(2, *self.a, *cmd, "--encrypt-key", self.path("k.key"))
                self.assertIn("key file '%s' is owned by uid 65534, not by you; refused"
                              % self.path("k.key"), r.err)
        self.assertFalse(os.path.exists(self.path("bk")) and os.listdir(self.path("bk")))
        # the environment's key file too; and once it is ours again it is taken
        self.code(2, *self.a, "backup", env={"SAFE_MIGRATE_ENCRYPTION_KEY_FILE":
                                             self.path("k.key")})
        os.chown(self.path("k.key"), 0, 0)
        self.ok(*self.a, "backup", "--encrypt-key", self.path("k.key"))

    def test_compression_level_applies_to_encrypted_snapshots(self):
        # text-heavy rows: zstd's higher levels find much more in them
        words = ["order", "shipped", "customer", "invoice", "pending", "warehouse",
                 "Berlin", "Lisbon", "Osaka", "returned", "paid", "express"]
        con = sqlite3.connect(self.path("text.db"))
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        con.executemany("INSERT INTO notes(body) VALUES (?)",
                        [(" ".join(words[(i * 7 + j * j) % len(words)] for j in range(40))
                          + " #%d" % i,) for i in range(6000)])
        con.commit()
        con.close()
        a = ["-d", self.sqlite_url("text.db"), "-b", self.path("bk"), "--encrypt-key",
             self.path("k.key")]
        sizes = {}
        for level in ("1", "19"):
            self.ok(*a, "backup", "--name", "l" + level, "--compression-level", level)
            sizes[level] = os.path.getsize(self.path("bk", "l%s.tar.zst" % level))
        # the records carry the compression: a higher level is clearly smaller
        self.assertLess(sizes["19"], sizes["1"] * 0.9, sizes)
        # the config's compression_level too
        self.write("lvl.ini", "[safe-migrate]\ncompression_level = 19\n")
        self.ok("-c", self.path("lvl.ini"), *a, "backup", "--name", "c19")
        self.assertLess(os.path.getsize(self.path("bk", "c19.tar.zst")), sizes["1"] * 0.9)
        r = self.ok("--json", "verify", self.path("bk", "l19.tar.zst"), "--encrypt-key",
                    self.path("k.key"))
        self.assertTrue(r.json()["authenticated"])
        self.ok(*a, "restore", self.path("bk", "l19.tar.zst"), "--to",
                self.sqlite_url("back.db"), "--yes")
        self.assertEqual(self.sqlite_dump("back.db"), self.sqlite_dump("text.db"))

    def test_require_encryption_refuses_an_unencrypted_snapshot(self):
        plain = self.backup("plain")
        enc = self.backup("enc", "--encrypt-key", self.path("k.key"))
        key = ["--encrypt-key", self.path("k.key")]
        self.sqlite("INSERT INTO t(v) VALUES ('after the snapshots')")
        before = self.sqlite_dump()
        listed = sorted(os.listdir(self.path("bk")))
        # a plain snapshot (e.g. a forgery swapped into the backup directory) is
        # refused in place before anything: no safety snapshot, no change
        r = self.code(7, *self.a, "restore", plain, "--yes", "--require-encryption", *key)
        self.assertIn("snapshot '%s' is refused: it is not encrypted" % plain, r.err)
        self.assertIn("--require-encryption", r.err)
        self.assert_untouched(before)
        self.assertEqual(sorted(os.listdir(self.path("bk"))), listed)
        r = self.code(7, "verify", plain, "--require-encryption", *key)
        self.assertIn("not encrypted", r.out)
        # from a stream too
        r = from_stdin(self, plain, *self.a, "restore", "-", "--yes", "--no-safety-backup",
                       "--require-encryption", *key)
        self.assertEqual(r.code, 7, r)
        self.assertIn("snapshot '-' is refused", r.err)
        self.assert_untouched(before)
        # the config and the environment set it as the flag does
        self.write("req.ini", "[safe-migrate]\nrequire_encryption = true\n")
        r = self.code(7, "-c", self.path("req.ini"), *self.a, "restore", plain, "--yes", *key)
        self.assertIn("require_encryption", r.err)
        self.code(7, *self.a, "restore", plain, "--yes", *key,
                  env={"SAFE_MIGRATE_REQUIRE_ENCRYPTION": "yes"})
        r = self.code(2, *self.a, "restore", plain, "--yes", *key,
                      env={"SAFE_MIGRATE_REQUIRE_ENCRYPTION": "maybe"})
        self.assertIn("invalid require_encryption 'maybe'", r.err)
        # without any key nothing can be accepted: a usage error, naming the option
        r = self.code(2, *self.a, "restore", enc, "--yes", "--require-encryption")
        self.assertIn("--require-encryption", r.err)
        self.assert_untouched(before)
        self.assertEqual(sorted(os.listdir(self.path("bk"))), listed)
        # without the requirement the old, unencrypted snapshot still restores
        self.ok(*self.a, "restore", plain, "--to", self.sqlite_url("p.db"), "--yes", *key)
        # an encrypted one is accepted, in place and from a stream
        self.ok("verify", enc, "--require-encryption", *key)
        self.ok(*self.a, "restore", enc, "--yes", "--no-safety-backup", "--require-encryption",
                *key)
        self.assertEqual(self.sqlite("SELECT count(*) FROM t WHERE v = 'after the snapshots'"),
                         [(0,)])
        r = from_stdin(self, enc, *self.a, "restore", "-", "--to", self.sqlite_url("s.db"),
                       "--yes", "--require-encryption", *key)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.sqlite_dump("s.db"), self.sqlite_dump())
        # commands that read no snapshot refuse the flag
        r = self.code(2, *self.a, "current", "--require-encryption")
        self.assertIn("--require-encryption do not apply", r.err)

    def test_require_encryption_in_recover(self):
        # a run killed in its apply phase, with an unencrypted snapshot
        self.write("migrations/0001_slow.sql", "-- migrate:up\nCREATE TABLE big AS "
                   "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                   "WHERE x < 300000000) SELECT x FROM c;\n")
        a = ["-d", self.sqlite_url(), "-b", self.path("backups")]
        p = self.start_in_apply(*a, "safe-migrate", capture=False)
        p.kill()
        p.wait()
        before = self.sqlite_dump()
        key = ["--encrypt-key", self.path("k.key")]
        r = self.code(7, *a, "recover", "--yes", "--require-encryption", *key)
        self.assertIn("it is not encrypted", r.err)
        self.assertIn("--require-encryption", r.err)
        self.assert_untouched(before)
        # the run is still open: recovering without the requirement works
        self.ok(*a, "recover", "--yes", *key)
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name = 'big'"),
                         [(0,)])

    def test_streamed_snapshot_wrong_key_tampered_or_truncated_is_refused(self):
        snap = self.backup("st", "--encrypt-key", self.path("k.key"))
        self.keygen("other.key")
        tampered = self.path("tampered.tar.zst")
        with open(snap, "rb") as f, open(tampered, "wb") as g:
            g.write(f.read())
        rewrite(tampered, lambda e: flip_second_record(self, e))
        cut = self.path("cut.tar.zst")
        with open(snap, "rb") as f, open(cut, "wb") as g:
            g.write(f.read()[:os.path.getsize(snap) // 2])
        self.sqlite("INSERT INTO t(v) VALUES ('after the snapshot')")
        before = self.sqlite_dump()
        key = ["--encrypt-key", self.path("k.key")]
        cases = ((snap, ["--encrypt-key", self.path("other.key")], 1, "encrypted with another key"),
                 (tampered, key, 7, "fails authentication"),
                 (cut, key, 7, "damaged"))
        for stream, k, code, why in cases:
            with self.subTest(why=why):
                r = from_stdin(self, stream, *self.a, "restore", "-", "--yes",
                               "--no-safety-backup", *k)
                self.assertEqual(r.code, code, r)
                self.assertIn(why, r.err)
                self.assert_untouched(before)
                r = from_stdin(self, stream, *self.a, "restore", "-", "--yes",
                               "--to", self.sqlite_url("new.db"), *k)
                self.assertEqual(r.code, code, r)
                self.assertFalse(os.path.exists(self.path("new.db")))
                r = from_stdin(self, stream, "verify", "-", *k)
                self.assertEqual(r.code, code, r)
        # and the good stream restores
        r = from_stdin(self, snap, *self.a, "restore", "-", "--yes", "--no-safety-backup", *key)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.sqlite("SELECT count(*) FROM t WHERE v = 'after the snapshot'"),
                         [(0,)])

    def test_pipeline_with_encryption_configured(self):
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n"
                   "backup_dir = bk\nencryption_key_file = k.key\n")
        self.write("migrations/0001_a.sql", "-- migrate:up\nCREATE TABLE a (x INT);\n"
                   "-- migrate:down\nDROP TABLE a;\n")
        self.write("migrations/0002_bad.sql", "-- migrate:up\nUPDATE t SET v = 'same';\n"
                   "CREATE UNIQUE INDEX t_v ON t(v);\n")
        before = self.sqlite_dump()
        r = self.code(5, "safe-migrate", "--json")
        j = r.json()
        self.assertEqual(j["outcome"], "restored")
        self.assertEqual(self.sqlite_dump(), before)
        header = json.loads(dict(read_tar(self.path(j["snapshot"])))["snapshot.json"])
        self.assertEqual(header["encryption"]["key_id"], self.key)
        os.unlink(self.path("migrations/0002_bad.sql"))
        r = self.ok("run", "--json", "--", "/bin/true")
        self.assertEqual(r.json()["outcome"], "applied")
        r = self.ok("safe-migrate", "--json")
        self.assertEqual(r.json()["outcome"], "applied")
        self.assertEqual(self.sqlite("SELECT count(*) FROM a"), [(0,)])
        # a public key alone cannot restore the pipeline's own snapshot: refused up front
        self.keygen("x.pem", "x.pub")
        self.write("pub.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n"
                   "backup_dir = bk\nencrypt_to = x.pub\n")
        r = self.code(2, "-c", self.path("pub.ini"), "safe-migrate")
        self.assertIn("needs the private key", r.err)


class EncryptPg(CliTest):
    def test_pg_round_trip_and_tampered_in_place_restore(self):
        src = self.pg_new_db()
        self.psql(src, "CREATE TABLE t (id int PRIMARY KEY, v text);"
                  "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g;")
        self.ok("keygen", "--output", self.path("k.key"))
        key = ["--encrypt-key", self.path("k.key")]
        self.ok("-d", src, "-b", self.path("bk"), "backup", "--name", "p1", *key)
        snap = self.path("bk", "p1.tar.zst")
        dst = self.pg_new_db()
        self.ok("-d", src, "-b", self.path("bk"), "restore", snap, "--to", dst, "--yes", *key)
        q = "SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM t"
        self.assertEqual(self.psql(dst, q), self.psql(src, q))

        def flip(entries):
            for i, (name, data) in enumerate(entries):
                if name.startswith("data/") and len(data) > 100:
                    data = bytearray(data)
                    data[50] ^= 1
                    entries[i] = (name, bytes(data))
                    return
        rewrite(snap, flip)
        self.psql(src, "INSERT INTO t VALUES (5000, 'after the snapshot')")
        before = self.psql(src, q)
        # no key: refused before the safety snapshot and the confirmation
        listed = sorted(os.listdir(self.path("bk")))
        r = self.code(1, "-d", src, "-b", self.path("bk"), "restore", snap, "--yes")
        self.assertIn("give its key", r.err)
        self.assertEqual(sorted(os.listdir(self.path("bk"))), listed)
        r = self.run_sm("-d", src, "-b", self.path("bk"), "restore", snap, "--yes",
                        "--no-safety-backup", *key)
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("fails authentication", r.err)
        self.assertEqual(self.psql(src, q), before)

    def test_pg_wrong_key_truncation_and_require_encryption_in_place_and_streamed(self):
        src = self.pg_new_db()
        self.psql(src, "CREATE TABLE t (id int PRIMARY KEY, v text);"
                  "INSERT INTO t SELECT g, md5(g::text) || repeat(md5((g * 7)::text), 40) "
                  "FROM generate_series(1, 3000) g;")
        self.ok("keygen", "--output", self.path("k.key"))
        self.ok("keygen", "--output", self.path("other.key"))
        key = ["--encrypt-key", self.path("k.key")]
        a = ["-d", src, "-b", self.path("bk")]
        self.ok(*a, "backup", "--name", "p1", *key)
        self.ok(*a, "backup", "--name", "plain")
        snap, plain = self.path("bk", "p1.tar.zst"), self.path("bk", "plain.tar.zst")
        tampered, cut = self.path("tampered.tar.zst"), self.path("cut.tar.zst")
        with open(snap, "rb") as f:
            data = f.read()
        with open(tampered, "wb") as g:
            g.write(data)
        with open(cut, "wb") as g:
            g.write(data[:len(data) // 2])
        rewrite(tampered, lambda e: flip_second_record(self, e))
        self.psql(src, "INSERT INTO t VALUES (5000, 'after the snapshot')")
        q = "SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM t"
        before = self.psql(src, q)
        cases = (("wrong key", snap, ["--encrypt-key", self.path("other.key")], 1,
                  "encrypted with another key"),
                 ("tampered", tampered, key, 7, "fails authentication"),
                 ("truncated", cut, key, 7, "damaged"),
                 ("unencrypted, encryption required", plain, key + ["--require-encryption"], 7,
                  "--require-encryption"))
        for what, stream, k, code, why in cases:
            with self.subTest(what=what, how="in place"):
                listed = sorted(os.listdir(self.path("bk")))
                r = self.run_sm(*a, "restore", stream, "--yes", *k)
                self.assertEqual(r.code, code, r)
                self.assertIn(why, r.err)
                self.assertEqual(self.psql(src, q), before)
                # a wrong key and an unencrypted snapshot are refused from the
                # header, before even the safety snapshot (damage is found
                # while loading, inside the one transaction)
                if code == 1 or "require" in what:
                    self.assertEqual(sorted(os.listdir(self.path("bk"))), listed)
            with self.subTest(what=what, how="streamed"):
                r = from_stdin(self, stream, *a, "restore", "-", "--yes", "--no-safety-backup",
                               *k)
                self.assertEqual(r.code, code, r)
                self.assertIn(why, r.err)
                self.assertEqual(self.psql(src, q), before)
        # the good one, streamed in place under the requirement
        r = from_stdin(self, snap, *a, "restore", "-", "--yes", "--no-safety-backup",
                       "--require-encryption", *key)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.psql(src, "SELECT count(*) FROM t WHERE id = 5000"), "0")


if __name__ == "__main__":
    main()
