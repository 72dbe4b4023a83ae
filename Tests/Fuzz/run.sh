#!/usr/bin/env bash
# Builds the libFuzzer targets with -sanitize=fuzzer,address and runs each for SECONDS.
# New inputs go to .build-fuzz/corpus/NAME; the committed seeds in Tests/Fuzz/corpus/NAME are
# read only. A crash leaves its input as .build-fuzz/crash-* and fails the run: replay it with
# `.build-fuzz/debug/FuzzX .build-fuzz/crash-…` and add it to a unit test.
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
flags=(--scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
       -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld)
declare -A corpus=([FuzzRequestReader]=request-reader [FuzzSSEEncoder]=sse-encoder [FuzzIngestDecoder]=ingest-decoder
                  [FuzzJSONReader]=json-reader)
for target in FuzzRequestReader FuzzSSEEncoder FuzzIngestDecoder FuzzJSONReader; do
    swift build "${flags[@]}" --product "$target"
done
for target in FuzzRequestReader FuzzSSEEncoder FuzzIngestDecoder FuzzJSONReader; do
    name=${corpus[$target]}
    mkdir -p ".build-fuzz/corpus/$name"
    echo "fuzz: $target for ${seconds}s"
    status=0
    ".build-fuzz/debug/$target" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 \
        -artifact_prefix=.build-fuzz/ -print_final_stats=1 \
        ".build-fuzz/corpus/$name" "Tests/Fuzz/corpus/$name" > ".build-fuzz/$target.log" 2>&1 || status=$?
    grep -E "^(Done|==[0-9]+==|SUMMARY|ERROR|Fatal)" ".build-fuzz/$target.log" || true
    if [ "$status" -ne 0 ]; then
        tail -40 ".build-fuzz/$target.log" >&2
        echo "fuzz: $target failed (status $status); see .build-fuzz/$target.log" >&2
        exit 1
    fi
done
