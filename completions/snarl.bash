# bash completion for snarl(1): commands, options, --format values,
# --fail-on kinds, the PIDs of Python processes, core files. Needs only bash
# itself (the bash-completion package finds it, but is not required):
# no program is run while completing, /proc is read with builtins.

_snarl_commands="check stacks tasks tree graph task watch"
_snarl_options="--format --all --all-objects --fail-on --sysroot --coredumpctl --no-freeze --timing --help --version"
_snarl_watch_options="--timeout --output --format --core-dir --signal --kill-after --fail-on --no-freeze --help"
_snarl_kinds="await-cycle lock-cycle lock-reacquire wake-cycle all-asleep loop-blocked loop-self-wait nested-loop weak-pending-task stuck thread-lock-cycle"

# The PIDs of the Python processes this user can see: those whose argv[0]
# (an interpreter started by a script's #! line included) or command name is
# python, python3, python3.14, python3.14d...
_snarl_python_pids() {
	local d pid arg0 comm
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		arg0=
		{ IFS= read -r -d '' arg0 <"$d/cmdline"; } 2>/dev/null
		comm=
		{ IFS= read -r comm <"$d/comm"; } 2>/dev/null
		if [[ ${arg0##*/} =~ ^python[0-9.]*d?$ || $comm =~ ^python[0-9.]*d?$ ]]; then
			printf '%s\n' "$pid"
		fi
	done
}

# Comma-separated diagnosis kinds: complete the last one.
_snarl_kind_list() {
	local cur=$1 done_part= last=$1
	if [[ $cur == *,* ]]; then
		done_part=${cur%,*},
		last=${cur##*,}
	fi
	local k
	for k in $_snarl_kinds; do
		[[ $k == "$last"* ]] && printf '%s\n' "$done_part$k"
	done
}

_snarl() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	local i cmd= watch=0 dashdash=0
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--) dashdash=1 ;;
		-*) ;;
		*) [[ -z $cmd && " $_snarl_commands " == *" ${COMP_WORDS[i]} "* ]] && cmd=${COMP_WORDS[i]} ;;
		esac
	done
	[[ $cmd == watch ]] && watch=1
	COMPREPLY=()

	# After `snarl watch ... --`: the command and its arguments.
	if ((watch && dashdash)); then
		compopt -o default 2>/dev/null
		COMPREPLY=($(compgen -c -- "$cur"))
		return
	fi

	case $prev in
	--format)
		if ((watch)); then
			COMPREPLY=($(compgen -W "text json" -- "$cur"))
		elif [[ $cmd == graph ]]; then
			COMPREPLY=($(compgen -W "dot svg mermaid json text" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "text json" -- "$cur"))
		fi
		return ;;
	--fail-on)
		compopt -o nospace 2>/dev/null
		COMPREPLY=($(_snarl_kind_list "$cur"))
		return ;;
	--sysroot | --core-dir)
		compopt -o filenames 2>/dev/null
		COMPREPLY=($(compgen -d -- "$cur"))
		return ;;
	--output)
		compopt -o filenames 2>/dev/null
		COMPREPLY=($(compgen -f -- "$cur"))
		return ;;
	--signal)
		COMPREPLY=($(compgen -W "TERM INT HUP QUIT KILL USR1 USR2" -- "$cur"))
		return ;;
	--timeout | --kill-after | --coredumpctl)
		return ;;
	task)
		# a task id, as `snarl tasks TARGET` prints it
		[[ $cmd == task ]] && return ;;
	esac

	if [[ $cur == -* ]]; then
		if ((watch)); then
			COMPREPLY=($(compgen -W "$_snarl_watch_options --" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$_snarl_options" -- "$cur"))
		fi
		return
	fi
	((watch)) && return
	local words=
	[[ -z $cmd ]] && words=$_snarl_commands
	# A target: a Python process's PID, or a core file (then its executable).
	compopt -o filenames 2>/dev/null
	COMPREPLY=($(compgen -W "$words $(_snarl_python_pids)" -- "$cur") $(compgen -f -- "$cur"))
}

complete -F _snarl snarl
