#!/bin/sh
# Compiler launcher of the header checks and docs snippets (tests/CMakeLists.txt): the compile
# command it is given,
# run with -fsyntax-only, which parses and checks the header (warnings included) but generates no
# code, a third of a header check's time; then an empty object file, so that the build tool
# finds the step's output and skips it until the header changes (the depfile is still written).
out=
prev=
for arg in "$@"; do
  [ "$prev" = -o ] && out=$arg
  prev=$arg
done
# A precompiled header (its output *.gch) is compiled as given: the TUs need it whole.
case "$out" in *.gch) exec "$@" ;; esac
"$@" -fsyntax-only || exit
[ -n "$out" ] && : >"$out"
