"""Shared helpers of the fault-injection tests (test_faults.py for SQLite,
test_faults_pg.py for PostgreSQL): running the real binary under the
LD_PRELOAD shim tests/faults/faultshim.c and checking what it left behind.

Each command is first run unfaulted to learn how many calls of each kind it
makes; then it is run again with a fault at every call index (or at a spread
of indexes when there are many).  Every faulted run must either succeed or
fail cleanly with a contract exit code, and afterwards:
  - every visible snapshot verifies (no partial snapshot is ever visible);
  - the database is in its old state, or, for a run that succeeded (or was
    killed after its commit), in its new state;
  - after one more normal run no temp or staging file is left.
"""
import os
import time

from smtest import BIN, CliTest

SHIM = os.environ.get("SM_FAULTSHIM") or os.path.join(
    os.path.dirname(BIN), "..", "..", "tests", "libfaultshim.so")
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")
TEMP_MARKERS = (".safe-migrate-tmp", ".safe-migrate-restore.")
# how many call indexes of one kind to try at most (spread over the range)
SPREAD = int(os.environ.get("SM_FAULT_SPREAD", "8"))


def spread(n, limit=SPREAD):
    """Call indexes 1..n, or about `limit` of them spread over the range
    (always the first and the last)."""
    if n <= limit:
        return list(range(1, n + 1))
    if limit <= 1:
        return [(n + 1) // 2]
    return sorted({1 + round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def shim_env(extra):
    """The environment that preloads the shim, with extra (SM_FAULT_STOP...)."""
    env = {"LD_PRELOAD": os.path.abspath(SHIM),
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1") +
                           ":verify_asan_link_order=0"}
    env.update(extra)
    return env


def wait_stopped(proc, timeout=60):
    """Waits until proc is stopped (SIGSTOP), or fails if it exited."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        with open("/proc/%d/stat" % proc.pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return True
        time.sleep(0.02)
    return False


class FaultTest(CliTest):
    def setUp(self):
        super().setUp()
        if not os.path.exists(SHIM):
            self.fail("the fault shim is not built: %s" % SHIM)
        self.count_file = self.path("fault-counts")

    # -- running under the shim ---------------------------------------------
    def run_shim(self, *args, fault=None, kill=None, persist=False, **kw):
        env = {"LD_PRELOAD": os.path.abspath(SHIM),
               "ASAN_OPTIONS": self.env.get("ASAN_OPTIONS", "detect_leaks=1") +
                               ":verify_asan_link_order=0",
               "SM_FAULT_COUNT_FILE": self.count_file}
        if fault:
            env["SM_FAULT"] = fault
        if kill:
            env["SM_FAULT_KILL"] = kill
        if persist:
            env["SM_FAULT_PERSIST"] = "1"
        env.update(kw.pop("env", {}) or {})
        if os.path.exists(self.count_file):
            os.unlink(self.count_file)
        kw.setdefault("timeout", 120)  # a hang is a failure, not a stuck suite
        return self.run_sm(*args, env=env, **kw)

    def counts(self, *args, **kw):
        """Runs args unfaulted (it must succeed) and returns {kind: calls}."""
        r = self.run_shim(*args, **kw)
        self.assertEqual(r.code, 0, r)
        with open(self.count_file) as f:
            counts = dict((k, int(v)) for k, v in (l.split() for l in f))
        self.assertEqual(counts["fired"], 0)
        return counts

    def assertClean(self, r, allowed, killed=False):
        """No sanitizer report; the injected SIGKILL or a contract exit code;
        a failure says what failed."""
        for m in SANITIZER_MARKERS:
            self.assertNotIn(m, r.err, r)
        if killed:
            self.assertEqual(r.code, -9, r)
            return
        self.assertIn(r.code, allowed, r)
        if r.code not in (0, 3):
            self.assertIn("error", r.err, r)

    def assertSnapshotsVerify(self, bdir):
        if not os.path.isdir(bdir):
            return
        for f in sorted(os.listdir(bdir)):
            if f.endswith(".tar.zst") and not f.startswith("."):
                self.ok("verify", os.path.join(bdir, f))

    def temps(self, *dirs):
        found = []
        for d in dirs:
            if os.path.isdir(d):
                found += [os.path.join(d, f) for f in os.listdir(d)
                          if any(m in f for m in TEMP_MARKERS)]
        return found

    def assertNoTemps(self, *dirs):
        self.assertEqual(self.temps(*dirs), [])


