# bash completion for lmkit: lm and every lm-* program.
# Options come from the programs themselves (`lm-x --lmkit-options`, generated from the
# same CLI11 declaration as --help), so completion cannot drift from the program.

_lmkit_commands="tokenize convert-checkpoint train generate eval-loss inspect-config bench"

_lmkit_option_words() {
  "$1" --lmkit-options 2>/dev/null | cut -f1 | tr ' ' '\n' | grep -- '^-'
}

_lmkit_complete() {
  local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[0]}
  COMPREPLY=()
  if [[ ${cmd##*/} == lm ]]; then
    if (( COMP_CWORD == 1 )); then
      mapfile -t COMPREPLY < <(compgen -W "$_lmkit_commands" -- "$cur")
      return
    fi
    cmd=lm-${COMP_WORDS[1]}
  fi
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(_lmkit_option_words "$cmd")" -- "$cur")
    return
  fi
  mapfile -t COMPREPLY < <(compgen -f -- "$cur")
}

complete -o filenames -F _lmkit_complete lm lm-tokenize lm-convert-checkpoint lm-train lm-generate lm-eval-loss lm-inspect-config lm-bench
