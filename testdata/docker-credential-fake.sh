#!/bin/sh
dir=$(dirname "$0")
mkdir -p "$dir/store"
input=$(cat)
echo "$1" >> "$dir/calls"
case "$1" in
get|erase) url=$input ;;
store) url=$(printf '%s' "$input" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/') ;;
*) echo "unknown action $1"; exit 1 ;;
esac
file="$dir/store/$(printf '%s' "$url" | tr -c 'A-Za-z0-9.' '_')"
case "$1" in
get) if [ -f "$file" ]; then cat "$file"; else echo "credentials not found in native keychain"; exit 1; fi ;;
store) printf '%s' "$input" > "$file" ;;
erase) if [ -f "$file" ]; then rm "$file"; else echo "credentials not found in native keychain"; exit 1; fi ;;
esac
