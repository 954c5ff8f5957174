"""The snarl commands in lldb: `command script import snarl_lldb.py` (from a
built source tree, or where `make install` put it) adds the command
container `snarl` with `check`, `tasks`, `tree`, `graph`, `stacks` and
`task ID`. lldb supplies the memory (read in large blocks) and the threads;
the mapped files come from lldb's modules (their PT_LOAD segments), or, for
a live process on this machine, from its /proc/PID/maps, which names the
files lldb could not find itself (e.g. in a chroot). Set SNARL_DEBUG=1 in
the environment to see the traceback of an internal error."""
import os
import shlex
import sys
import traceback

import lldb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import snarl_common as common
finally:
    del sys.path[0]

_SCRIPT = os.path.abspath(__file__)
_PAGE = 4096
_SYSROOT_HINT = ("load the core after 'platform select --sysroot DIR remote-linux', DIR "
                 "being where the target's files live (or pass --sysroot DIR)")
_RUNNING = (lldb.eStateRunning, lldb.eStateStepping, lldb.eStateLaunching,
            lldb.eStateAttaching)
_STOPPED = (lldb.eStateStopped, lldb.eStateCrashed, lldb.eStateSuspended)


class _Refused(Exception):
    """The target cannot be read now; the text says why and what to do."""


def _proc_maps(pid):
    maps = []
    with open("/proc/%d/maps" % pid, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                maps.append((start, end, int(fields[2], 16), fields[5].rstrip("\n")))
    return maps


def _module_maps(target):
    """Each module's PT_LOAD segments as the mappings the loader made."""
    maps = []
    for module in target.module_iter():
        path = module.GetFileSpec().fullpath
        if not path or not path.startswith("/"):
            continue  # [vdso] and the like
        for section in module.section_iter():
            if not section.GetName().startswith("PT_LOAD"):
                continue
            load = section.GetLoadAddress(target)
            size = section.GetFileByteSize()
            if load == lldb.LLDB_INVALID_ADDRESS or size == 0:
                continue
            start = load & ~(_PAGE - 1)
            end = (load + size + _PAGE - 1) & ~(_PAGE - 1)
            maps.append((start, end, section.GetFileOffset() & ~(_PAGE - 1), path))
    return maps


def _run(exe_ctx, command, arg, result):
    req = common.parse(command, shlex.split(arg))
    if req is None:
        result.Print(common.command_help(command) + "\n")
        return
    target = exe_ctx.GetTarget()
    process = target.GetProcess() if target.IsValid() else None
    if process is not None and process.IsValid() and process.GetState() == lldb.eStateExited:
        # lldb saw it end first (a process killed while lldb held it): the
        # engine's sentence for a PID that has exited.
        raise _Refused("snarl: process %d has already exited\nhint: attach to a running "
                       "process ('process attach -p PID') or load a core" % process.GetProcessID())
    if process is None or not process.IsValid() or process.GetState() not in _STOPPED + _RUNNING:
        raise _Refused("snarl: there is no process or core to read\n"
                       "hint: load a core ('target create -c CORE EXECUTABLE') or attach "
                       "('process attach -p PID') first")
    if process.GetState() in _RUNNING:
        raise _Refused("snarl: the process is running\nhint: interrupt it first "
                       "('process interrupt')")
    is_core = "core" in (process.GetPluginName() or "")
    # A live process on this machine: the engine may look up its PID here
    # (and tell one that died under the read from one it cannot read).
    local = not is_core and target.GetPlatform().GetName() == "host"
    maps = None
    if local:
        try:
            maps = _proc_maps(process.GetProcessID())
        except OSError:
            pass
    if maps is None:
        maps = _module_maps(target)

    def read(addr, size):
        error = lldb.SBError()
        data = process.ReadMemory(addr, size, error)
        return data if error.Success() else None

    ext = common.load_extension(_SCRIPT)
    try:
        status, out = ext.run(
            read=read, mappings=maps, threads=[t.GetThreadID() for t in process],
            pid=process.GetProcessID(), is_core=is_core, stopped=True, local=local,
            executable=target.GetExecutable().fullpath, **req)
    except ext.Error as e:
        message, hint, _ = e.args
        raise _Refused(common.error_text(message, hint, _SYSROOT_HINT))
    result.Print(out)
    result.SetStatus(lldb.eReturnStatusSuccessFinishResult)


class _Command:
    """One snarl subcommand; lldb makes an instance per registration."""
    command = None

    def __init__(self, debugger, internal_dict):
        pass

    def __call__(self, debugger, arg, exe_ctx, result):
        try:
            _run(exe_ctx, self.command, arg, result)
        except common.UsageError as e:
            result.SetError(e.text)
        except _Refused as e:
            result.SetError(str(e))
        except ImportError as e:
            result.SetError("snarl: %s" % e)
        except Exception as e:
            debug = os.environ.get("SNARL_DEBUG")
            if debug:
                result.Print(traceback.format_exc())
            result.SetError("snarl: internal error: %s: %s%s" % (
                type(e).__name__, e, "" if debug else " (SNARL_DEBUG=1 for the traceback)"))

    def get_short_help(self):
        return common.SUMMARY[self.command]

    def get_long_help(self):
        return common.command_help(self.command)


for _name in common.COMMANDS:
    globals()["Snarl_" + _name] = type("Snarl_" + _name, (_Command,), {"command": _name})


def __lldb_init_module(debugger, internal_dict):
    summary, _, overview = common.OVERVIEW.partition("\n")
    overview = overview.replace("snarl [check]  ", "snarl check    ").replace(
        " (the default)", "")
    debugger.HandleCommand("command container add -o -h %s -H %s snarl" % (
        shlex.quote(summary), shlex.quote("snarl <subcommand> [OPTIONS]\n\n" + overview)))
    for name in common.COMMANDS:
        debugger.HandleCommand("command script add -o -c %s.Snarl_%s snarl %s"
                               % (__name__, name, name))
