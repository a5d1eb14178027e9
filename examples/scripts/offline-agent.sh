#!/bin/sh
# A stand-in for Claude that runs anywhere: reads the prompt on stdin and writes the report
# the job's validations expect. Mozart passes the batch in MOZART_* environment variables.
set -eu
prompt=$(cat)
mkdir -p output
out="output/batch${MOZART_BATCH_NUM}-result.md"
{
  echo "# Batch ${MOZART_BATCH_NUM} of ${MOZART_TOTAL_BATCHES}"
  echo
  echo "Items ${MOZART_START_ITEM} to ${MOZART_END_ITEM}:"
  i=$MOZART_START_ITEM
  while [ "$i" -le "$MOZART_END_ITEM" ]; do
    echo "- item $i: done"
    i=$((i + 1))
  done
  echo
  echo "## Summary"
  echo
  echo "Processed $((MOZART_END_ITEM - MOZART_START_ITEM + 1)) items from a prompt of $(printf '%s' "$prompt" | wc -c | tr -d ' ') bytes."
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
