"""Objects for the CPython layer's readers: instances of a plain class
(managed dicts / inline values, a materialized __dict__, deleted attributes),
a class that outgrows its shared keys, a class with __slots__, and attributes
of every type snarl decodes (str of each kind, int, bool, None, tuple, list,
dict, set, frozenset, deque, weakref, bound method, nested instances).

The truth, written as JSON to argv[1] before settling, is what the
interpreter itself says: id() of every object, each attribute's decoded
value and the ids of the Marker instances gc.get_objects() lists. Once every
other thread is blocked for good, a last thread writes len(gc.get_objects())
to argv[1] + ".gc.json" and blocks too: from then on nothing allocates, so
the GC lists hold exactly that many objects.
Run: python3 objects_stuck.py TRUTH.json  (prints READY once settled)
"""
import asyncio  # noqa: F401  (loads _asyncio, whose debug table snarl finds)
import collections
import ctypes
import gc
import json
import os
import sys
import threading
import time
import types
import weakref

import snarl_sample


def _asyncio_task_size():
    import _asyncio
    return _asyncio.Task.__basicsize__


def _asyncio_file():
    """The file _asyncio lives in: its own .so, or the executable when
    built in."""
    import _asyncio
    return getattr(_asyncio, "__file__", None) or os.path.realpath(sys.executable)

# Longer than one 1 KiB read of the str reader, in each of the three kinds.
LONG_STR_LEN = 5000
# More than one deque block (64 items) and a partial first and last block.
DEQUE_LEN = 200
# More than one 512-pointer read for lists, one 128-entry read for dicts and
# one 256-entry read for set tables.
BIG_LEN = 700
# The thread that counts the GC lists last (see count_when_settled).
COUNTER = "snarl-objects-counter"
# Two looks this far apart at the other threads must agree before they count
# as blocked (a thread that still runs would have moved).
STABLE_INTERVAL = 0.05
# Attributes added to one Crowded instance after creation: more than the 30
# a shared-keys table holds, so its values move to a real dict.
CROWDED_ATTRS = 50


class Marker:
    """A plain class: its instances' attributes live in managed storage."""

    def __init__(self, name):
        self.name = name

    def poke(self):
        return self.name


class Crowded:
    def __init__(self):
        self.first = "first"


class Slotted:
    __slots__ = ("x", "y")

    def __init__(self):
        self.x = "slot-x"
        self.y = 42


class Tag(str):
    """A str subclass: not compact, its text sits behind a data pointer."""


class Num(int):
    pass


def scalar(v):
    """An object as snarl-probe reports it: address, type and, for str and
    int (bool included), the decoded value."""
    d = {"addr": hex(id(v)), "type": type(v).__name__}
    if isinstance(v, str):
        d["str"] = str(v)
    elif isinstance(v, int):
        d["int"] = int(v)
    return d


def describe(v):
    """scalar() plus one level of contents for containers, the referent of
    a weakref and the self and function of a bound method."""
    d = scalar(v)
    if isinstance(v, (tuple, list, set, frozenset, collections.deque)):
        d["items"] = [scalar(x) for x in v]
    elif isinstance(v, dict):
        d["items"] = [[scalar(k), scalar(x)] for k, x in v.items()]
    elif type(v) is weakref.ref:
        d["referent"] = hex(id(v()))  # a dead ref points at None
    elif type(v) is types.MethodType:
        d["self"] = hex(id(v.__self__))
        d["func"] = hex(id(v.__func__))
    return d


def put(obj, **attrs):
    """Sets attributes and remembers their names: listing an instance's
    attributes through __dict__ or dir() would materialize its dict."""
    for name, value in attrs.items():
        setattr(obj, name, value)
    NAMES.update(attrs)


# Every attribute name the sample sets; each object is asked for all of them.
NAMES = {"name", "first", "gone", "via_dict", "x", "y"}


def make_old():
    """Objects collected once before the others exist: the oldest generation.
    The "scalars" Marker comes first: a class's shared keys take at most 30
    names, less one per instance made, so its 25 stay in managed (3.11,
    3.12) or inline (3.13+) values, while Markers given other names later
    fall back to a dict."""
    m = Marker("scalars")
    put(m, ascii="hello, snarl", latin1="café naïve ÿ", ucs2="Привет, 世界",
        ucs4="snarl 🐍🎉 done",
        long_ascii=("snarl-" * (LONG_STR_LEN // 6 + 1))[:LONG_STR_LEN],
        long_ucs2=("世界Ω" * (LONG_STR_LEN // 3 + 1))[:LONG_STR_LEN],
        long_ucs4=("🐍a" * (LONG_STR_LEN // 2 + 1))[:LONG_STR_LEN],
        legacy=Tag("légacy Ω tag"))
    put(m, zero=0, small=7, negative=-5, neg_big=-123456789, two_digits=2 ** 40 + 7,
        three_digits=2 ** 62 + 11, int64_min_plus=-(2 ** 63 - 1), too_big=2 ** 100,
        subint=Num(1234), yes=True, no=False, nothing=None)
    m.gone = "deleted below"
    del m.gone
    target = Marker("weak-target")
    child = Marker("child")
    put(m, child=child, weak=weakref.ref(target), method=target.poke)
    return [target, child, m]


def make_mid(old):
    """Objects one young collection has moved out of the youngest generation."""
    child = old[1]
    c = Marker("containers")
    mixed = {"a": 1, 2: "two", (1, 2): None, 3.5: "float", "gone": 0}
    del mixed["gone"]
    s = {1, "a", "é", 2 ** 40 + 7, (1, 2), "discarded"}
    s.discard("discarded")
    d = collections.deque(["s%d" % i if i % 3 else i for i in range(DEQUE_LEN)])
    d.appendleft("left")
    d.popleft()
    d.popleft()
    d.append("right")
    put(c, empty="", flt=2.5, tup=(1, "two", 3.5, None, child, True), empty_tup=(),
        lst=[child, "x", -1, 2 ** 40 + 7, "Ω"], big_list=list(range(BIG_LEN)),
        str_dict={"alpha": 1, "beta": "b", "ключ": -7, "child": child},
        mixed_dict=mixed, big_dict={"k%d" % i: i for i in range(BIG_LEN)},
        set_=s, big_set=set(range(BIG_LEN)), frozen=frozenset({"f", 1, None}),
        deque_=d, dead_weak=weakref.ref(Marker("dies")))  # "dies" is freed at once
    return [c]


def make_young(old):
    """Objects still in the youngest generation."""
    m = Marker("materialized")
    put(m, extra="before the dict exists")
    m.__dict__["via_dict"] = 99  # materializes the instance dict
    put(m, late="after the dict exists")
    crowded = Crowded()
    put(crowded, **{"a%d" % i: (i if i % 2 else "v%d" % i) for i in range(CROWDED_ATTRS)})
    slotted = Slotted()
    holder = Marker("holder")
    put(holder, crowded=crowded, slotted=slotted, nested=old[2])
    return [m, holder, crowded, slotted]


MISSING = object()


def attrs_of(obj):
    """Expected value of each name: describe() of the attribute as stored on
    the instance, or absent (deleted, never set, or in a slot, where snarl
    does not look). Marker and Crowded define none of NAMES themselves."""
    out = {}
    for name in sorted(NAMES):
        value = MISSING if isinstance(obj, Slotted) else getattr(obj, name, MISSING)
        out[name] = {"absent": True} if value is MISSING else describe(value)
    return out


# Where CPython keeps a managed dict pointer: three words before the object.
MANAGED_DICT_OFFSET = -24


def storage_of(obj):
    """Where the instance's attributes live, read from memory so that the
    dict is not materialized by asking: "dict" (a dict object exists),
    "values" (managed values, 3.11-3.12, or inline values, 3.13+) or "none"
    (no managed dict: __slots__). Lets the test check that the sample
    covers each path of py_attr on every version."""
    if not type(obj).__flags__ & (1 << 4):  # Py_TPFLAGS_MANAGED_DICT
        return "none"
    word = ctypes.c_uint64.from_address(id(obj) + MANAGED_DICT_OFFSET).value
    if sys.version_info[:2] == (3, 12):
        return "values" if word & 1 else "dict" if word else "values"
    return "dict" if word else "values"


def generation_of(ids):
    """The GC generation each object id is on, as gc.get_objects(g) lists it."""
    where = {}
    for g in range(3):
        for o in gc.get_objects(generation=g):
            if id(o) in ids:
                where[hex(id(o))] = g
    return where


def _last_line(code):
    return max(line for _, _, line in code.co_lines() if line is not None)


def others_at_rest(main_ident):
    """Where the main thread and the samples' watcher are, once both sit on
    the line where they block for good (the main thread in settle(), the
    watcher on the line that prints READY); None before that."""
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    tops = {ident: (f.f_code, f.f_lineno, f.f_lasti)
            for ident, f in sys._current_frames().items() if ident != me}
    main_top, watcher = tops.get(main_ident), None
    for ident, top in tops.items():
        if names.get(ident) == snarl_sample.WATCHER:
            watcher = top
    if main_top is None or watcher is None or main_top[0] is not snarl_sample.settle.__code__ or \
            main_top[1] != _last_line(main_top[0]) or watcher[1] != _last_line(watcher[0]):
        return None
    return sorted((ident, top[2]) for ident, top in tops.items())


def count_when_settled(path, main_ident, block):
    """Waits until the other threads are blocked, counts the objects on the
    GC lists, writes the count to path and blocks. Anything made before the
    count (the polls' garbage included) is counted; after it, nothing that
    the GC tracks is made: the text is a str, the file a descriptor."""
    previous = None
    while True:
        time.sleep(STABLE_INTERVAL)
        now = others_at_rest(main_ident)
        if now is not None and now == previous:
            break
        previous = now
    count = len(gc.get_objects())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b'{"gc_objects": %d}' % count)
    os.close(fd)
    block.acquire()


def main():
    truth_path = sys.argv[1]
    keep = make_old()
    gc.collect()  # the old objects move to the oldest generation
    keep += make_mid(keep)
    gc.collect(0)  # these move out of the youngest generation
    keep += make_young(keep)
    # No collection from here on: garbage made while settling stays where the
    # count sees it, and nothing moves between the generations recorded.
    gc.disable()
    objects = [{"addr": hex(id(o)), "type": type(o).__name__, "storage": storage_of(o),
                "attrs": attrs_of(o)} for o in keep]
    markers = sorted(hex(id(o)) for o in gc.get_objects() if type(o) is Marker)
    truth = {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "pid": os.getpid(),
        "objects": objects,
        "attr_names": sorted(NAMES),
        "markers": markers,
        "marker_generations": generation_of({id(o) for o in keep if type(o) is Marker}),
        "freeze_count": gc.get_freeze_count(),
        "asyncio_task_size": _asyncio_task_size(),
        "asyncio_file": _asyncio_file(),
    }
    with open(truth_path, "w", encoding="utf-8") as f:
        json.dump(truth, f, ensure_ascii=False)
    block = threading.Lock()
    block.acquire()
    threading.Thread(target=count_when_settled, name=COUNTER, daemon=True,
                     args=(truth_path + ".gc.json", threading.get_ident(), block)).start()
    # settle() records the threads' truth to argv[1]: send it next to ours.
    sys.argv[1] = truth_path + ".threads.json"
    snarl_sample.settle({})


if __name__ == "__main__":
    main()
