"""The snarl commands in gdb: `source snarl_gdb.py` (from a built source
tree, or where `make install` put it) adds `snarl check|tasks|tree|graph|
stacks|task ID` and the settings `set snarl format` and `set snarl debug`.
gdb supplies the memory (read in large blocks), the mapped files (`info
proc mappings`, which reads a core's NT_FILE note or a live process's maps,
also through gdbserver) and the threads; the engine does the rest."""
import os
import re
import sys
import traceback

import gdb

# gdb defines __file__ only while it sources the script.
_SCRIPT = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(_SCRIPT))
try:
    import snarl_common as common
finally:
    del sys.path[0]

# info proc mappings: start, end, size, offset, then (live targets only) the
# permissions, then the file, if any.
_MAPPING = re.compile(r"^\s*(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)"
                      r"(?:\s+[r-][w-][x-][ps-])?\s*(.*)$")
_TARGET_PREFIX = "target:"
_SYSROOT_HINT = ("set sysroot DIR (or pass --sysroot DIR) where the target's files live, "
                 "and load the executable with 'file'")

_ext = None


def _extension():
    global _ext
    if _ext is None:
        try:
            _ext = common.load_extension(_SCRIPT)
        except ImportError as e:
            raise gdb.GdbError("snarl: %s" % e)
    return _ext


def _local(path):
    """A path gdb names with its 'target:' prefix, as this machine's path."""
    if path and path.startswith(_TARGET_PREFIX):
        return path[len(_TARGET_PREFIX):]
    return path


def _mappings():
    try:
        text = gdb.execute("info proc mappings", to_string=True)
    except gdb.error:
        return []  # the engine then says no file was found, and which
    maps = []
    for line in text.splitlines():
        m = _MAPPING.match(line)
        if m:
            maps.append((int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16),
                         m.group(4).strip()))
    return maps


def _proc_exe():
    """The executable as `info proc exe` names it: the process's own
    /proc/PID/exe when live (also through gdbserver), the command a core
    recorded; None unless an absolute path."""
    try:
        m = re.search(r"^exe = '(/.*)'$", gdb.execute("info proc exe", to_string=True), re.M)
    except gdb.error:
        return None
    return m.group(1) if m else None


def _executable(inferior, is_core):
    """What the command line would name: a live process's own executable;
    for a core, the file loaded into gdb (a core records only a command)."""
    loaded = _local(inferior.progspace.filename)
    return (loaded or _proc_exe()) if is_core else (_proc_exe() or loaded)


def _is_core(inferior):
    connection = getattr(inferior, "connection", None)  # gdb 12+
    if connection is not None:
        return connection.type == "core"
    return "Local core dump file" in gdb.execute("info target", to_string=True)


def _is_local(inferior, is_core):
    """A live process on this machine (gdb's native target, not gdbserver):
    the engine may then look up its PID here, to tell a process that died
    under the read from one it cannot read."""
    if is_core:
        return False
    connection = getattr(inferior, "connection", None)  # gdb 12+
    if connection is not None:
        return connection.type == "native"
    return "Native process" in gdb.execute("info target", to_string=True)


def _run(command, arg):
    req = common.parse(command, gdb.string_to_argv(arg), _format.value)
    if req is None:
        gdb.set_convenience_variable("_snarl_status", 0)
        gdb.write(common.command_help(command) + "\n")
        return
    inferior = gdb.selected_inferior()
    threads = inferior.threads()
    if inferior.pid == 0 or not threads:
        raise gdb.GdbError("snarl: there is no process or core to read\n"
                           "hint: load a core ('core-file FILE'), attach ('attach PID') or "
                           "connect ('target remote HOST:PORT') first")
    if any(t.is_running() for t in threads):
        raise gdb.GdbError("snarl: the program is running\n"
                           "hint: interrupt it first (Ctrl-C, or 'interrupt -a')")

    def read(addr, size):
        try:
            return inferior.read_memory(addr, size)
        except gdb.MemoryError:
            return None

    sysroot = req.pop("sysroot") or _local(gdb.parameter("sysroot"))
    is_core = _is_core(inferior)
    ext = _extension()
    try:
        status, out = ext.run(
            read=read, mappings=_mappings(), threads=[t.ptid[1] or t.ptid[0] for t in threads],
            pid=inferior.pid, is_core=is_core, stopped=True, local=_is_local(inferior, is_core),
            executable=_executable(inferior, is_core), sysroot=sysroot, **req)
    except ext.Error as e:
        message, hint, _ = e.args
        raise gdb.GdbError(common.error_text(message, hint, _SYSROOT_HINT))
    gdb.set_convenience_variable("_snarl_status", status)
    gdb.write(out)


def _invoke(command, arg):
    """Runs a command; anything but the engine's own errors is a bug, shown
    as one line unless `set snarl debug on` asks for the traceback.
    $_snarl_status ends as the CLI's exit status would: 2 unless the
    analysis ran."""
    gdb.set_convenience_variable("_snarl_status", 2)
    try:
        _run(command, arg)
    except common.UsageError as e:
        raise gdb.GdbError(e.text)
    except (gdb.GdbError, KeyboardInterrupt):
        raise
    except Exception as e:
        if _debug.value:
            gdb.write(traceback.format_exc(), gdb.STDERR)
        raise gdb.GdbError("snarl: internal error: %s: %s%s" % (
            type(e).__name__, e, "" if _debug.value else " (set snarl debug on for the traceback)"))


class _Command(gdb.Command):
    def __init__(self, command):
        self.__doc__ = common.command_help(command)
        self.command = command
        super().__init__("snarl " + command, gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        self.dont_repeat()
        _invoke(self.command, arg)

    def complete(self, text, word):
        if text.split(" ")[-2:-1] == ["--sysroot"]:
            return gdb.COMPLETE_FILENAME
        return common.complete(text, word, self.command)


class _Snarl(gdb.Command):
    __doc__ = common.OVERVIEW

    def __init__(self):
        super().__init__("snarl", gdb.COMMAND_STATUS, prefix=True)

    def invoke(self, arg, from_tty):
        # `snarl` alone, or with options only: check, as on the command line.
        self.dont_repeat()
        _invoke("check", arg)

    def complete(self, text, word):
        return common.complete(text, word, "check")


class _SetSnarl(gdb.Command):
    """Settings of the snarl commands."""

    def __init__(self, verb):
        super().__init__(verb + " snarl", gdb.COMMAND_STATUS, prefix=True)


class _ShowSnarl(_SetSnarl):
    """Show the settings of the snarl commands."""

    def invoke(self, arg, from_tty):
        if arg.strip():
            raise gdb.GdbError('Undefined show snarl command: "%s".  Try "help show snarl".'
                               % arg.strip())
        gdb.write("format: %s\ndebug: %s\n" % (_format.value, "on" if _debug.value else "off"))


class _FormatParameter(gdb.Parameter):
    """The format the snarl commands print when --format is not given."""
    set_doc = "Set the format the snarl commands print by default (text or json)."
    show_doc = "Show the format the snarl commands print by default."

    def __init__(self):
        super().__init__("snarl format", gdb.COMMAND_STATUS, gdb.PARAM_ENUM, ("text", "json"))
        self.value = "text"

    def get_set_string(self):
        return ""

    def get_show_string(self, svalue):
        return "The snarl commands print %s by default (graph: %s)." % (
            svalue, "dot" if svalue == "text" else svalue)


class _DebugParameter(gdb.Parameter):
    """Whether an internal error of the snarl commands shows its traceback."""
    set_doc = "Set whether snarl's internal errors show a Python traceback."
    show_doc = "Show whether snarl's internal errors show a Python traceback."

    def __init__(self):
        super().__init__("snarl debug", gdb.COMMAND_MAINTENANCE, gdb.PARAM_BOOLEAN)
        self.value = False

    def get_set_string(self):
        return ""

    def get_show_string(self, svalue):
        return "Python tracebacks of snarl's internal errors are %s." % svalue


_Snarl()
for _name in common.COMMANDS:
    _Command(_name)
_SetSnarl("set")
_ShowSnarl("show")
_format = _FormatParameter()
_debug = _DebugParameter()
