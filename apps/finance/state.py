"""The online per-entity state in Redis, shared by several service replicas.

:class:`~lepton_apps.finance.online.OnlineState` keeps each customer's and terminal's recent
history in the process: one service process, one state. :class:`RedisState` keeps the same history
in a Redis server, so that every replica behind a load balancer sees the transactions the others
scored. It answers the same calls (``window_values``, ``update``, ``record_label``, ``to_frame``,
``history``) with the same numbers: features are bit-identical to the in-process state's.

Layout, under a key prefix ``P`` (default ``lepton:finance:``; one prefix per fraud model family):

* ``P c:<customer>`` — sorted set, score = epoch seconds, member ``<seq>:<cents>``;
* ``P t:<terminal>`` — sorted set, score = epoch seconds, member ``<seq>:<label>:<tx_id>`` (label -1: not
  known yet); ``P x:<tx_id>`` — which terminal and member a transaction is (for late labels);
* ``P latest`` (newest time seen), ``P seq`` (member counter), ``P spec`` (the feature spec the history was
  built for: windows and label delay), ``P ready`` (seeded from a bundle's saved state).

``score_one`` is one Lua script, one round trip: it counts the transaction's windows on the server
(per window: the customer's count and sum of cents, the terminal's count and frauds — integers, so the
features are the in-process state's to the bit) and appends it, then forgets what is older than the
longest window plus the label delay, atomically: two replicas scoring the same customer at the same
instant are served one after the other, as batch order would. A single Redis server (or a primary
with replicas / Sentinel) is assumed; Redis Cluster is not supported (a script touches keys of several
entities).
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lepton_apps.errors import ConfigError, DataError, UnavailableError, require

from .features import DAY_S, NAT, FeatureSpec, Stream, history_stream
from .online import OnlineState

DEFAULT_PREFIX = "lepton:finance:"

# The three scripts share these functions. KEYS (always all five): customer zset, terminal zset, tx key,
# latest, seq. read ARGV: t, label delay (s), has_customer, has_terminal, number of windows, the windows (s).
# add ARGV: t, cents, label, tx_id, cutoff, has_customer, has_terminal, tx key prefix, terminal name.
_FUNCTIONS = """
local function read(a)
  local t, delay, n = tonumber(a[1]), tonumber(a[2]), tonumber(a[5])
  local widest = 0
  for i = 1, n do widest = math.max(widest, tonumber(a[5 + i])) end
  local c, tl = {}, {}
  if a[3] == '1' then
    local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (t - widest), t, 'WITHSCORES')
    for i = 1, n do
      local lo, count, sum = t - tonumber(a[5 + i]), 0, 0
      for j = 1, #rows, 2 do
        if tonumber(rows[j + 1]) > lo then
          count = count + 1
          sum = sum + tonumber(string.match(rows[j], '^%d+:(%-?%d+)$'))
        end
      end
      c[#c + 1] = count
      c[#c + 1] = sum
    end
  end
  if a[4] == '1' then
    local hi = t - delay
    local rows = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (hi - widest), hi, 'WITHSCORES')
    for i = 1, n do
      local lo, count, frauds = hi - tonumber(a[5 + i]), 0, 0
      for j = 1, #rows, 2 do
        if tonumber(rows[j + 1]) > lo then
          count = count + 1
          if string.match(rows[j], '^%d+:(%-?%d+):') == '1' then frauds = frauds + 1 end
        end
      end
      tl[#tl + 1] = count
      tl[#tl + 1] = frauds
    end
  end
  return {c, tl}
end

local function add(a)
  local seq = redis.call('INCR', KEYS[5])
  local t = a[1]
  if a[6] == '1' then
    redis.call('ZADD', KEYS[1], t, seq .. ':' .. a[2])
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', a[5])
  end
  if a[7] == '1' then
    local m = seq .. ':' .. a[3] .. ':' .. a[4]
    redis.call('ZADD', KEYS[2], t, m)
    if a[4] ~= '' then redis.call('SET', KEYS[3], a[9] .. '\\n' .. m) end
    local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', a[5])
    for _, o in ipairs(old) do
      local id = string.match(o, '^%d+:%-?%d+:(.*)$')
      if id and id ~= '' then redis.call('DEL', a[8] .. id) end
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', a[5])
  end
  local latest = redis.call('GET', KEYS[4])
  if (not latest) or tonumber(latest) < tonumber(t) then redis.call('SET', KEYS[4], t) end
end

local function part(from, to)
  local out = {}
  for i = from, to do out[#out + 1] = ARGV[i] end
  return out
end
"""
_READ = _FUNCTIONS + "return read(part(1, #ARGV))"
_UPDATE = _FUNCTIONS + "add(part(1, 9)) return 1"
_OBSERVE = _FUNCTIONS + "local r = read(part(1, #ARGV - 9)) add(part(#ARGV - 8, #ARGV)) return r"

# KEYS: tx key; ARGV: label, prefix of the terminal sets. The member is replaced by one with the new label.
_LABEL = """
local where = redis.call('GET', KEYS[1])
if not where then return 0 end
local sep = string.find(where, '\\n', 1, true)
local terminal, m = string.sub(where, 1, sep - 1), string.sub(where, sep + 1)
local z = ARGV[2] .. terminal
local score = redis.call('ZSCORE', z, m)
if not score then return 0 end
local seq, id = string.match(m, '^(%d+):%-?%d+:(.*)$')
local new = seq .. ':' .. ARGV[1] .. ':' .. id
redis.call('ZREM', z, m)
redis.call('ZADD', z, score, new)
redis.call('SET', KEYS[1], terminal .. '\\n' .. new)
return 1
"""


class RedisState:
    """Per-entity recent history in Redis (same interface and numbers as ``OnlineState``)."""

    def __init__(self, spec: FeatureSpec, url: str, prefix: str = DEFAULT_PREFIX, client=None):
        self.spec, self.url, self.prefix = spec, url, prefix
        if client is None:
            redis = require("redis", feature="The shared online state (--state-url)", extra="redis")
            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.r = client
        self.keep_s = int(max(spec.windows_days) * DAY_S) + spec.delay_s if spec.windows_days else spec.delay_s
        self._update = self.r.register_script(_UPDATE)
        self._read = self.r.register_script(_READ)
        self._observe = self.r.register_script(_OBSERVE)
        self._label = self.r.register_script(_LABEL)

    @contextlib.contextmanager
    def _guard(self):
        """Turn a Redis failure into an UnavailableError (the service answers 503) saying which server."""
        import redis

        try:
            yield
        except redis.RedisError as exc:
            raise UnavailableError(f"the shared online state in Redis does not answer ({type(exc).__name__}: {exc})",
                                   where=_safe(self.url), fix="check the Redis server (GET /readyz says when it is "
                                                              "back) and retry") from None

    # ------------------------------------------------------------------ keys
    def _k(self, kind: str, key: str = "") -> str:
        return f"{self.prefix}{kind}:{key}" if key or kind in ("c", "t", "x") else f"{self.prefix}{kind}"

    def _spec_id(self) -> str:
        return json.dumps({"windows_days": list(self.spec.windows_days), "label_delay_days": self.spec.label_delay_days,
                           "customer": self.spec.has("customer"), "terminal": self._terminal_windows}, sort_keys=True)

    # ------------------------------------------------------------------ OnlineState's interface
    @property
    def latest(self) -> int:
        """Return the newest transaction time in the state (NAT when empty)."""
        with self._guard():
            v = self.r.get(self._k("latest"))
        return NAT if v is None else int(float(v))

    def empty(self) -> bool:
        """Return True when no customer or terminal history is stored."""
        return self.latest == NAT

    def _keys(self, customer: str | None, terminal: str | None, tx_id: str = "") -> list[str]:
        return [self._k("c", customer or ""), self._k("t", terminal or ""), self._k("x", tx_id), self._k("latest"),
                self._k("seq")]

    def _read_args(self, t: int) -> list:
        spec = self.spec
        return [int(t), spec.delay_s, int(spec.has("customer")), int(self._terminal_windows), len(spec.windows_days),
                *(int(w * DAY_S) for w in spec.windows_days)]

    def _add_args(self, t: int, cents: int | None, label: int, tx: str, terminal: str | None) -> list:
        return [int(t), 0 if cents is None else int(cents), int(label), tx, int(t) - self.keep_s,
                int(self.spec.has("customer")), int(self._terminal_windows), self._k("x"), terminal or ""]

    @property
    def _terminal_windows(self) -> bool:
        return self.spec.has("terminal") and self.spec.has("label")

    def _values(self, t: int, cents: int | None, customer: list, terminal: list) -> dict[str, float]:
        """Return the window features from a read script's per-window integers (the same arithmetic as
        ``OnlineState.window_values``)."""
        spec, out = self.spec, {}
        dow, hour = (t // DAY_S + 3) % 7, (t % DAY_S) // 3600
        out["is_weekend"], out["is_night"] = float(dow >= 5), float(hour <= 6)
        for i, w in enumerate(spec.windows_days if spec.has("customer") else []):
            count, total = int(customer[2 * i]) + 1, int(customer[2 * i + 1])
            out[f"customer_nb_tx_{w}d"] = float(count)
            if cents is not None:
                out[f"customer_avg_amount_{w}d"] = (total + cents) / count / 100
        for i, w in enumerate(spec.windows_days if self._terminal_windows else []):
            count, frauds = int(terminal[2 * i]), int(terminal[2 * i + 1])
            out[f"terminal_nb_tx_{w}d"] = float(count)
            out[f"terminal_risk_{w}d"] = frauds / count if count else 0.0
        return out

    def window_values(self, t: int, cents: int | None, customer: str | None, terminal: str | None) -> dict[str, float]:
        """Return the time and window features of a transaction (without changing the state)."""
        with self._guard():
            c_win, t_win = self._read(keys=self._keys(customer, terminal), args=self._read_args(t))
        return self._values(t, cents, c_win, t_win)

    def update(self, t: int, cents: int | None, customer: str | None, terminal: str | None,
               label: int = -1, tx_id: str | None = None) -> None:
        """Append a transaction to its customer's and terminal's history (one atomic script), forgetting what
        is older than the longest window plus the label delay."""
        tx = "" if tx_id is None else str(tx_id)
        with self._guard():
            self._update(keys=self._keys(customer, terminal, tx), args=self._add_args(t, cents, label, tx, terminal))

    def observe(self, t: int, cents: int | None, customer: str | None, terminal: str | None,
                label: int = -1, tx_id: str | None = None) -> dict[str, float]:
        """Return the transaction's window features and add it to the state, in one atomic script: two
        replicas scoring the same customer at once are served one after the other, as in batch order."""
        tx = "" if tx_id is None else str(tx_id)
        with self._guard():
            c_win, t_win = self._observe(keys=self._keys(customer, terminal, tx),
                                         args=self._read_args(t) + self._add_args(t, cents, label, tx, terminal))
        return self._values(t, cents, c_win, t_win)

    def record_label(self, tx_id: Any, label: int) -> bool:
        """Set the label of an earlier transaction; return False if it is no longer in the state."""
        with self._guard():
            return bool(self._label(keys=[self._k("x", str(tx_id))], args=[int(label), self._k("t")]))

    def prune(self) -> None:
        """Nothing to do: every update already forgets its entities' old transactions."""

    def to_frame(self, customers: set[str] | None = None, terminals: set[str] | None = None) -> pd.DataFrame:
        """Return the state (or the named entities' part) as the table ``OnlineState.to_frame`` writes."""
        rows: dict[str, list] = {"kind": [], "key": [], "t": [], "value": [], "tx_id": []}
        for kind, wanted in (("customer", customers), ("terminal", terminals)):
            short = kind[0]
            if wanted is None:
                start = len(self._k(short))
                keys = [k.decode()[start:] for k in self.r.scan_iter(match=self._k(short) + "*", count=1000)]
            else:
                keys = sorted(wanted)
            pipe = self.r.pipeline(transaction=False)
            for key in keys:
                pipe.zrange(self._k(short, key), 0, -1, withscores=True)
            for key, members in zip(keys, pipe.execute()):
                for member, score in members:
                    parts = member.decode().split(":", 2)
                    rows["kind"].append(kind)
                    rows["key"].append(key)
                    rows["t"].append(int(score))
                    rows["value"].append(int(parts[1]))
                    rows["tx_id"].append(parts[2] if kind == "terminal" else "")
        frame = pd.DataFrame({"kind": pd.Series(rows["kind"], dtype="string"),
                              "key": pd.Series(rows["key"], dtype="string"),
                              "t": np.asarray(rows["t"], dtype=np.int64),
                              "value": np.asarray(rows["value"], dtype=np.int64),
                              "tx_id": pd.Series(rows["tx_id"], dtype="string")})
        return frame.sort_values(["kind", "key", "t"], kind="stable").reset_index(drop=True)

    def history(self, customers: set[str] | None = None, terminals: set[str] | None = None) -> Stream:
        """Return the state (or the named entities' part) as a :class:`Stream` of past transactions."""
        with self._guard():
            return history_stream(self.to_frame(customers, terminals))

    # ------------------------------------------------------------------ seeding
    def load_frame(self, frame: pd.DataFrame, *, replace: bool = False) -> None:
        """Write a saved state table (``OnlineState.to_frame``) into Redis; ``replace`` clears the prefix first."""
        if replace:
            self.clear()
        pipe = self.r.pipeline(transaction=False)
        seq = 0
        latest = NAT
        for kind, key, t, value, tx in frame[["kind", "key", "t", "value", "tx_id"]].itertuples(index=False):
            seq += 1
            t = int(t)
            latest = max(latest, t)
            if kind == "customer":
                pipe.zadd(self._k("c", str(key)), {f"{seq}:{int(value)}": t})
            else:
                tx = "" if tx is None or pd.isna(tx) else str(tx)
                member = f"{seq}:{int(value)}:{tx}"
                pipe.zadd(self._k("t", str(key)), {member: t})
                if tx:
                    pipe.set(self._k("x", tx), f"{key}\n{member}")
            if seq % 5000 == 0:
                pipe.execute()
        pipe.incrby(self._k("seq"), seq)
        if latest != NAT:
            pipe.set(self._k("latest"), latest)
        pipe.execute()

    def clear(self) -> int:
        """Delete every key under the prefix; return how many were deleted."""
        n = 0
        batch = []
        for key in self.r.scan_iter(match=self.prefix + "*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                n += self.r.delete(*batch)
                batch = []
        if batch:
            n += self.r.delete(*batch)
        return n

    def attach(self, seed: pd.DataFrame, *, version: str = "", wait_s: float = 120.0) -> str:
        """Make the shared state usable: the first replica seeds an empty prefix from ``seed`` (a bundle's saved
        state); the others wait until it is done. Returns "seeded", "shared" (already there) or "waited".
        Raises ConfigError when the prefix holds the history of a model with other windows or label delay."""
        spec_id = self._spec_id()
        stored = self.r.get(self._k("spec"))
        if stored is not None and stored.decode() != spec_id:
            raise ConfigError(f"the Redis prefix {self.prefix!r} holds the online state of a fraud model with other "
                              f"feature windows ({stored.decode()}; this model: {spec_id})",
                              where=self.url, fix="serve this model with another --state-prefix, or clear the old "
                                                  "state (redis-cli --scan --pattern 'PREFIX*' | xargs redis-cli del)")
        if self.r.get(self._k("ready")) is not None:
            return "shared"
        if self.r.set(self._k("seeding"), version or "1", nx=True, ex=int(wait_s)):
            self.load_frame(seed, replace=True)
            self.r.set(self._k("spec"), spec_id)
            self.r.set(self._k("ready"), version or "1")
            self.r.delete(self._k("seeding"))
            return "seeded"
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.r.get(self._k("ready")) is not None:
                return "waited"
            time.sleep(0.1)
        raise DataError(f"another replica has been seeding the online state under {self.prefix!r} for over "
                        f"{wait_s:.0f} s", where=self.url,
                        fix="check that replica's log; if it died, delete the key "
                            f"'{self._k('seeding')}' and restart")

    def ping(self) -> str | None:
        """Return None when Redis answers, else why not (for /readyz)."""
        try:
            self.r.ping()
            return None
        except Exception as exc:  # noqa: BLE001 - any client error means the state is unreachable
            return f"Redis at {_safe(self.url)} does not answer ({type(exc).__name__}: {exc})"


def save_state_file(state, path: str | Path) -> Path:
    """Write an online state (:class:`~lepton_apps.finance.online.OnlineState` or :class:`RedisState`) to a
    Parquet file (atomically); return the path."""
    from lepton_apps.io import atomic_path

    with atomic_path(path) as tmp:
        state.to_frame().to_parquet(tmp, index=False)
    return Path(path)


def load_state_file(spec: FeatureSpec, state, path: str | Path):
    """Return ``state`` replaced by the one :func:`save_state_file` wrote to ``path``: a new in-process
    :class:`~lepton_apps.finance.online.OnlineState`, or the same :class:`RedisState` with its contents replaced."""
    if not Path(path).is_file():
        raise DataError(f"state file not found: {path}", fix="pass a file written by save_state")
    frame = pd.read_parquet(path)
    if isinstance(state, OnlineState):
        return OnlineState.from_frame(spec, frame)
    state.load_frame(frame, replace=True)
    return state


def _safe(url: str) -> str:
    """Return the URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url

