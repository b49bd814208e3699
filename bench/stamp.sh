# Sourced by the benchmark scripts: `commit_stamp` prints the first line of
# every recorded result, as bench/src/stamp.rs writes it for the binaries.
# Changes under bench/results/ do not count as uncommitted.
commit_stamp() {
    local measured hash status
    measured="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if hash="$(git rev-parse HEAD 2>/dev/null)" &&
        status="$(git --no-optional-locks status --porcelain -- ':(top,exclude)bench/results' 2>/dev/null)"; then
        if [[ -z "$status" ]]; then
            echo "commit: $hash (clean) measured $measured"
        else
            echo "commit: $hash (uncommitted changes) measured $measured"
        fi
    else
        echo "commit: unknown measured $measured"
    fi
}
