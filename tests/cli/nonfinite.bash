# poison FILE: overwrites the first 4 data bytes of safetensors FILE with a NaN
# (0xffffffff), so the first tensor stored in it holds a non-finite value.
poison() {
  local n
  n=$(od -An -t u8 -N8 "$1" | tr -d ' ')
  printf '\377\377\377\377' | dd of="$1" bs=1 seek=$((8 + n)) conv=notrunc status=none
}
