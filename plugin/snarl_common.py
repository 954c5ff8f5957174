"""What the gdb and lldb front ends share: finding the _snarl extension, the
commands' help, parsing their options exactly as the snarl command line
does, and wording the engine's errors for a debugger user. The analysis and
the rendering are the engine's (_snarl.run); nothing here reads the target."""
import importlib.machinery
import importlib.util
import os
import sys

EXTENSION = "_snarl.abi3.so"

COMMANDS = ("check", "tasks", "tree", "graph", "stacks", "task")
FORMATS = ("text", "json", "dot", "mermaid")
GRAPH_FORMATS = ("dot", "mermaid", "json")
KINDS = ("await-cycle", "lock-cycle", "lock-reacquire", "wake-cycle", "all-asleep",
         "loop-blocked", "loop-self-wait", "nested-loop", "weak-pending-task", "stuck",
         "thread-lock-cycle")
OPTIONS = ("--format", "--all", "--all-objects", "--fail-on", "--sysroot", "--help")
# Options followed by a value (also accepted as --option=VALUE).
VALUED = ("--format", "--fail-on", "--sysroot")

SUMMARY = {
    "check": "What is stuck, and why: deadlocks, cycles, a loop nothing can wake.",
    "tasks": "Every asyncio task: state, innermost frame, what it waits on, who awaits it.",
    "tree": "The await tree from the root tasks down (cycles marked, never refused).",
    "graph": "The wait-for graph of tasks and resources (--format dot|mermaid|json).",
    "stacks": "Every thread's Python stack, innermost frame first.",
    "task": "One task in full, with the locals of each frame.",
}

DETAIL = {
    "check": """\
Prints the diagnoses (await-cycle, lock-cycle, lock-reacquire, wake-cycle,
all-asleep, loop-blocked, loop-self-wait, nested-loop, weak-pending-task, stuck,
thread-lock-cycle),
each with its tasks, resources and stacks, then a one-line verdict.
--fail-on KIND,... narrows which kinds count as found (the status).""",
    "tasks": """\
One line per task; identical tasks are grouped unless --all is given.
--all-objects also looks for tasks on the GC heap, not only in registries.""",
    "tree": "Each finding's tasks are marked.",
    "graph": "The default format is dot; json is the snarl/1 document.",
    "stacks": "An event-loop thread shows its running task spliced in.",
    "task": "ID is a task's address as 'snarl tasks' prints it (0x...).",
}

OPTION_HELP = """\
Options:
  --format FORMAT      text or json; graph: dot, mermaid or json
  --all                tasks: list identical tasks one by one
  --all-objects        also look for tasks on the GC heap
  --fail-on KIND,...   check: only these kinds count as found
  --sysroot DIR        where the target's files live on this machine"""

OVERVIEW = """\
Tell why the asyncio program being debugged is stuck.
snarl reads the inferior (a core file, a live process, a remote target) and
prints the same report as the snarl command line. The target must be stopped.

  snarl [check]       what is stuck, and why (the default)
  snarl tasks         every task
  snarl tree          the await tree
  snarl graph         the wait-for graph
  snarl stacks        every thread's Python stack
  snarl task ID       one task in full

""" + OPTION_HELP


class UsageError(Exception):
    """A command line the engine should not even see: (message[, hint])."""

    @property
    def text(self):
        hint = self.args[1] if len(self.args) > 1 else "see 'help snarl'"
        return "snarl: %s\nhint: %s" % (self.args[0], hint)


def usage(command):
    return "snarl %s%s [OPTIONS]" % (command, " ID" if command == "task" else "")


def command_help(command):
    return "%s\nUsage: %s\n%s\n\n%s" % (SUMMARY[command], usage(command), DETAIL[command],
                                        OPTION_HELP)


def load_extension(script_path):
    """The _snarl module: beside the script, in PREFIX/lib/snarl when the
    script is installed in PREFIX/share/snarl (`make install` keeps the
    architecture-dependent extension out of share/, as the FHS asks), or in
    the source tree's build/ directory."""
    if "_snarl" in sys.modules:
        return sys.modules["_snarl"]
    here = os.path.dirname(os.path.abspath(script_path))
    parent = os.path.dirname(here)
    tried = [os.path.join(here, EXTENSION),
             os.path.join(os.path.dirname(parent), "lib", "snarl", EXTENSION),
             os.path.join(parent, "build", EXTENSION)]
    for path in tried:
        if os.path.exists(path):
            loader = importlib.machinery.ExtensionFileLoader("_snarl", path)
            spec = importlib.util.spec_from_file_location("_snarl", path, loader=loader)
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            sys.modules["_snarl"] = module
            return module
    raise ImportError("snarl's extension %s is not built: looked in %s (run make)"
                      % (EXTENSION, ", ".join(os.path.dirname(p) for p in tried)))


def parse(command, argv, default_format="text"):
    """The request for _snarl.run from a command's arguments, as the snarl
    command line reads them; None when help was asked for."""
    req = {"command": command, "format": None, "task_id": None, "all": False,
           "all_objects": False, "fail_on": None, "sysroot": None}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in VALUED:
            if not eq:
                i += 1
                value = argv[i] if i < len(argv) else ""
            if name == "--format":
                if value not in FORMATS:
                    raise UsageError("--format takes text, json, dot or mermaid")
                req["format"] = value
            elif name == "--fail-on":
                if not value:
                    raise UsageError("--fail-on needs diagnosis kinds")
                req["fail_on"] = value
            elif not value:
                raise UsageError("--sysroot needs a directory")
            else:
                req["sysroot"] = value
        elif arg in ("-h", "--help"):
            return None
        elif arg == "--all":
            req["all"] = True
        elif arg == "--all-objects":
            req["all_objects"] = True
        elif arg == "--no-freeze":
            raise UsageError("--no-freeze is for the snarl command line: here the debugger "
                             "keeps the process stopped while snarl reads it")
        elif arg.startswith("-") and len(arg) > 1:
            raise UsageError("unknown option '%s'" % arg)
        elif command == "task" and req["task_id"] is None:
            req["task_id"] = arg
        else:
            raise UsageError("unexpected argument '%s': snarl reads the debugger's current "
                             "target" % arg)
        i += 1
    if command == "task" and req["task_id"] is None:
        raise UsageError("'task' needs a task id", "'snarl tasks' lists them")
    if req["format"] is None:
        # graph prints no text: its default is dot, as on the command line.
        req["format"] = "dot" if command == "graph" and default_format == "text" \
            else default_format
    return req


# The engine's hints that name the command line's ways; the debugger's own.
_HINTS = {
    "see 'snarl --help'": "see 'help snarl'",
    "'snarl tasks TARGET' lists the task ids": "'snarl tasks' lists the task ids",
}


def error_text(message, hint, sysroot_hint):
    """'snarl: MESSAGE' and a 'hint:' line, as the command line prints them,
    with hints about the command line's arguments put in the debugger's
    terms."""
    if "--sysroot DIR" in hint:
        hint = sysroot_hint
    hint = _HINTS.get(hint, hint)
    return "snarl: %s%s" % (message, "\nhint: " + hint if hint else "")


def complete(text, word, command):
    """Completions of a command's options and their values. text is the
    argument so far, word the part the debugger replaces (which may start
    after a '-' or ','); returns the candidates cut to extend word."""
    tokens = text.split(" ")
    token = tokens[-1]
    previous = tokens[-2] if len(tokens) > 1 else ""
    name, eq, value = token.partition("=")
    if eq:
        previous, token = name, value
    if previous == "--format":
        options = GRAPH_FORMATS if command == "graph" else ("text", "json")
    elif previous == "--fail-on":
        done = token.rpartition(",")[0]
        options = [(done + "," if done else "") + k for k in KINDS]
    elif token.startswith("-"):
        options = OPTIONS
    else:
        return []
    cut = len(token) - len(word)
    return [o[cut:] for o in options if o.startswith(token) and cut >= 0]
