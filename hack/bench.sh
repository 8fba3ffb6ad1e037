#!/usr/bin/env bash
# hack/bench.sh (make bench) — snapmove's kopia data path vs the kopia CLI, same kopia.
#
# Builds the kopia CLI from this module (`go build github.com/kopia/kopia`: the kopia
# snapmove links), test/datagen's CLI and the perf test binary of internal/mover/kopia;
# generates the data sets (test/datagen):
#   pg     postgres-like tree, seed 42 (scale 1: 1.15 GB in 2,500 files)
#   large  one 2 GiB file with 21% holes, seed 7
# then runs BENCH_REPS interleaved repetitions (CLI, snapmove, snapmove, CLI, ...) of:
#   CLI       repository create → snapshot create (first) → snapshot create (no-op) →
#             datagen mutate 5% → snapshot create (5pct) → snapshot restore + sync (restore),
#             each under /usr/bin/time -v, with Velero's settings: compression none,
#             --parallel NumCPU, no parallel upload of big files, 5,000 MB cache (80/20),
#             restore --parallel NumCPU without --write-sparse-files; automatic
#             maintenance off (Velero runs maintenance as separate jobs, snapmove never)
#   snapmove  go test -bench BackupFirst|BackupNoop|Backup5pct|Restore, one process each
#             (internal/mover/kopia/bench_test.go: same data, same steps, open → run →
#             close timed like one CLI command; "block" rows back the large file up as a
#             block volume and are compared with the CLI's large rows; "cbt" rows do the
#             same with changed block metadata: allocated ranges, then the changes since
#             the parent, as a CSI SnapshotMetadata service answers)
# and prints, per step, medians of wall time, snapmove/CLI ratio, CPU-s per GB of source,
# peak RSS and repository size, with the machine's CPU and load (hack/tools/benchreport prints
# the tables from the rows this script records). After that table, two of
# snapmove alone, from the same perf test binary, run once per repetition after its series:
#   compression  go test -bench BenchmarkCompression/<pg|large>/<compressor>, one process
#             each: per compressor (BackupRequest.Compression), a first backup into a new
#             repository and a restore of it, each step in its own process as above; the
#             repository's size on disk, wall and CPU seconds and peak RSS of both steps
#   verify    go test -bench BenchmarkVerifyCost/pg (TestVerifyCost's steps): a first backup
#             of pg with verify none, then VerifySnapshot of it at metadata, sample:10 and
#             full, on the backup's open repository (what BackupRequest.Verify adds) and
#             on a new read-only one without a cache (the repository commands'), then a
#             no-op backup and its metadata verification; wall and CPU seconds per step
#   resume    go test -bench BenchmarkResume/files (resume_perf_test.go): a 4 GiB volume of
#             16 MiB files uploaded whole into a new repository, then into another one by a
#             process that kills itself (SIGKILL) at 75%, then again by a new process with
#             an empty cache (the mover's retry in a new pod); wall and CPU seconds of the
#             whole and the resumed upload, and the bytes the resumed one read again. The
#             resumed snapshot is restored and compared, and no checkpoint may be left.
#   many      go test -bench BenchmarkManyFiles/files (many_perf_test.go), once, after the
#             repetitions: 2,000,000 × scale small files (datagen many: 0-2 KiB, 1,000 to a
#             directory), first backup, no-op and restore by snapmove and by the kopia CLI
#             (the benchmark runs both, interleaved); wall, CPU and peak RSS of each step
#
# Environment:
#   BENCH_SCALE=1        data set scale in (0, 1] (pg via datagen's scale, large 2 GiB × scale)
#   BENCH_REPS=3         repetitions; medians are printed
#   BENCH_QUICK=1        scale 1/16, 1 repetition: about two minutes once things are built
#   BENCH_OUT=/tmp/snapmove-bench  binaries, data sets (kept, stamped), results.tsv, logs
#   BENCH_DROP_CACHES=1  drop the page cache before every timed step (cold; root); default:
#                        the source is read just before (warm)
#   BENCH_BLOCK=0        skip snapmove's block-volume rows (block and cbt)
#   BENCH_FRESH_FS=1     every restore, CLI's and snapmove's, writes to a new ext4 filesystem
#                        (loop-mounted sparse image; root): a worker restores into a newly
#                        provisioned volume. 0 restores into a directory of $BENCH_OUT's
#                        filesystem, where ext4 then spends over half of a 2,500-file
#                        restore's CPU stepping over the inodes the previous series freed.
#   BENCH_COMPRESSORS    the compression table's compressors, space-separated; empty skips
#                        the table. Default: all of datapath.Compressors (see COMPRESSORS)
#   BENCH_VERIFY_COST=0  skip the verification table
#   BENCH_RESUME=0       skip the resume table
#   BENCH_MANY_FILES=N   the many-files table's file count (default 2,000,000 × scale; 0 skips)
#   BENCH_RESUME_CHECKPOINT=1s  checkpointInterval of the resume table's uploads (the
#                        mover's default is 30s, which a 4 GiB upload at this machine's disk
#                        speed never reaches; what counts is the interval's bytes: reported)
#   BENCH_HASH           content hash of snapmove's repositories; empty: what snapmove creates
#                        (BLAKE3-256-128). BLAKE2B-256-128: a repository Velero created first
#
# Wall times on a shared machine swing 1.5–3x with the neighbours' load: compare the
# ratios, which come from runs minutes apart, and the load column; don't run this next to
# other heavy jobs. Byte counts go through awk as %.0f: Debian's awk (mawk) clamps %d at
# 2^31-1, which once made the 2 GiB file a byte short and hid the CLI's repository growth. Repositories, caches and restores are deleted after every series.
#
# Stdout carries only the report; progress, rows and errors go to stderr.
set -euo pipefail

# shellcheck source=stack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh" # log, die
ROOT=$REPO_ROOT
exec 3>&1 1>&2 # the report goes to fd 3 (stdout)
OUT=${BENCH_OUT:-/tmp/snapmove-bench}
SCALE=${BENCH_SCALE:-1}
REPS=${BENCH_REPS:-3}
if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	SCALE=${BENCH_SCALE:-0.0625}
	REPS=${BENCH_REPS:-1}
fi
# COMPRESSORS defaults to datapath.Compressors, in quick mode too: there a data set and
# compressor (two processes, a backup and a restore) took about 2 s for none, zstd-fastest,
# zstd and s2-default on 2 busy cores, so all eight should stay within the minute quick mode
# may add. BENCH_COMPRESSORS="none zstd-fastest zstd s2-default" keeps one of each kind:
# zstd-better-compression and s2-better are the slow high-ratio settings of their
# families, and s2-parallel-4/8 are s2-default with 4 or 8 goroutines per stream.
COMPRESSORS=${BENCH_COMPRESSORS-none zstd zstd-fastest zstd-better-compression s2-default s2-better s2-parallel-4 s2-parallel-8}
VERIFY_COST=${BENCH_VERIFY_COST:-1}
RESUME=${BENCH_RESUME:-1}
MANY=${BENCH_MANY_FILES:-$(awk -v s="$SCALE" 'BEGIN { printf "%.0f", 2000000 * s }')}
export PERF_RESUME_CHECKPOINT=${BENCH_RESUME_CHECKPOINT:-1s}
DROP=${BENCH_DROP_CACHES:-0}
BLOCK=${BENCH_BLOCK:-1}
FRESH_FS=${BENCH_FRESH_FS:-1}
# snapmove's repositories' content hash: empty is what snapmove creates (BLAKE3-256-128);
# BLAKE2B-256-128 is what a repository that Velero created first has (and the CLI's here).
HASH=${BENCH_HASH:-}
NPROC=$(nproc)
DATA=$OUT/data
WORK=$OUT/work
LOGS=$OUT/logs
RES=$OUT/results.tsv
EXTRA=$OUT/extra.tsv # rows of the compression and verification tables: one metric each
K=$OUT/kopia
DG=$OUT/datagen
KT=$OUT/kopia.test
BR=$OUT/benchreport
LARGE_SIZE=$(awk -v s="$SCALE" 'BEGIN { m = int(2048 * s); if (m < 1) m = 1; printf "%.0f", m * 1048576 }')
PG_SEED=42 LARGE_SEED=7 PG_MUT_SEED=101 LARGE_MUT_SEED=201

export KOPIA_PASSWORD=perf-password KOPIA_CHECK_FOR_UPDATES=false

load1() { cut -d' ' -f1 /proc/loadavg; }

awk -v s="$SCALE" 'BEGIN { exit !(s > 0 && s <= 1) }' || die "BENCH_SCALE=$SCALE: want a number in (0, 1]"

# needs_mb: free space for the data sets plus the largest series (large: private copy,
# repository with the 5% growth, restore, cache), measured at scale 1, plus 1 GB.
needs_mb() { awk -v s="$SCALE" 'BEGIN { printf "%d", 12500 * s + 1000 }'; }
check_disk() {
	local free need
	free=$(df -Pm "$OUT" | awk 'NR == 2 { print $4 }')
	need=$(needs_mb)
	((free >= need)) || die "only $free MB free in $OUT, need $need MB (BENCH_SCALE shrinks the data)"
}

# unmount_all: every fresh filesystem still mounted below $OUT (a failed step leaves them).
unmount_all() { findmnt -rn -o TARGET | grep "^$OUT/" | sort -r | xargs -r umount 2>/dev/null || true; }
cleanup() { unmount_all; rm -rf "$WORK" "$DATA"/run-* "$LOGS"/kopia; }

# fresh_fs DIR BYTES: mount a new ext4 filesystem on DIR, a sparse image of 2 × BYTES + 1 GiB
# beside it, with its inode tables and journal written now rather than lazily during the step.
fresh_fs() {
	mkdir -p "$1"
	truncate -s $(($2 * 2 + (1 << 30))) "$1.img"
	{ mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$1.img" && mount -o loop "$1.img" "$1"; } ||
		die "BENCH_FRESH_FS=1 needs root and loop devices (BENCH_FRESH_FS=0 restores into a directory)"
}
trap cleanup EXIT

prepare() {
	mkdir -p "$OUT" "$DATA" "$LOGS"
	cleanup
	check_disk
	if [[ ! -x /usr/bin/time ]]; then
		log "installing GNU time (/usr/bin/time -v measures the CLI)"
		apt-get install -y -qq time >/dev/null || die "need /usr/bin/time (Debian package 'time')"
	fi
	log "building the kopia CLI, datagen, the perf benchmarks and the report"
	(cd "$ROOT" && go build -o "$K" github.com/kopia/kopia) || die "building the kopia CLI"
	(cd "$ROOT" && go build -o "$DG" ./test/datagen/cmd/datagen) || die "building datagen"
	(cd "$ROOT" && go test -c -tags perf -o "$KT" ./internal/mover/kopia/) || die "building the perf benchmarks"
	(cd "$ROOT/hack/tools" && go build -o "$BR" ./benchreport) || die "building the report (hack/tools/benchreport)"
	log "data sets (scale $SCALE) in $DATA"
	"$DG" ensure-pg "$DATA/pg" $PG_SEED "$SCALE" >&2
	"$DG" ensure-large "$DATA/large/disk.img" $LARGE_SEED "$LARGE_SIZE" >&2
	[[ -s $RES ]] || printf 'time\trep\ttool\tdataset\tstep\twall_s\tcpu_s_per_gb\trss_mib\trepo_mb\tbytes\tload1\tbase_rss_mib\n' >"$RES"
	[[ -s $EXTRA ]] || printf 'time\trep\ttable\tdataset\tvariant\tmetric\tvalue\tload1\n' >"$EXTRA"
}

# record REP TOOL DATASET STEP WALL CPU_S_PER_GB RSS REPO_MB BYTES LOAD1 [BASE_RSS]: one
# row into this run's table and the cumulative one.
record() {
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%H:%M:%S)" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "${10}" "${11:--}" |
		tee -a "$RES" "$RUN_RES" >&2
}

warm_or_drop() { # PATH
	if [[ $DROP == 1 ]]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	elif [[ -n ${1:-} ]]; then
		find "$1" -type f -exec cat {} + >/dev/null
	fi
}

file_bytes() { find "$1" -type f -printf '%s\n' | awk '{ n += $1 } END { printf "%.0f", n }'; }

# timed REP DATASET STEP BYTES REPO cmd...: run the command under /usr/bin/time -v and record it.
timed() {
	local rep=$1 ds=$2 step=$3 bytes=$4 repo=$5 la t
	shift 5
	t=$LOGS/time.cli.$ds.$step.$rep
	la=$(load1)
	/usr/bin/time -v -o "$t" "$@" >"$LOGS/out.cli.$ds.$step.$rep" 2>&1 ||
		die "kopia CLI $step of $ds failed: see $LOGS/out.cli.$ds.$step.$rep"
	local wall cpu rss repo_mb=-
	wall=$(awk -F': ' '/Elapsed/ { n = split($2, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; print s }' "$t")
	cpu=$(awk -F': ' -v b="$bytes" '/User time/ { u = $2 } /System time/ { s = $2 } END { if (b > 0) printf "%.3f", (u + s) / (b / 1e9); else print "-" }' "$t")
	rss=$(awk -F': ' '/Maximum resident/ { printf "%.1f", $2 / 1024 }' "$t")
	[[ -n $repo ]] && repo_mb=$(awk -v n="$(file_bytes "$repo")" 'BEGIN { printf "%.2f", n / 1e6 }')
	record "$rep" cli "$ds" "$step" "$wall" "$cpu" "$rss" "$repo_mb" "$bytes" "$la"
}

cli_series() { # REP DATASET
	local rep=$1 ds=$2 src mut
	check_disk
	rm -rf "$WORK" && mkdir -p "$WORK"
	if [[ $ds == pg ]]; then
		src=$WORK/pg
		"$DG" pg "$src" $PG_SEED "$SCALE" >/dev/null
		mut=(mutate-pg "$src" "$PG_MUT_SEED" 5)
	else
		src=$WORK/large
		mkdir -p "$src"
		"$DG" large "$src/disk.img" $LARGE_SEED "$LARGE_SIZE" >/dev/null
		mut=(mutate-large "$src/disk.img" "$LARGE_MUT_SEED" 5)
	fi
	local bytes repo=$WORK/repo cache=$WORK/cache rst=$WORK/restore
	bytes=$(file_bytes "$src")
	mkdir -p "$repo"
	export KOPIA_CONFIG_PATH=$WORK/repository.config KOPIA_LOG_DIR=$LOGS/kopia
	timed "$rep" "$ds" create 0 "" "$K" repository create filesystem --path="$repo" --cache-directory="$cache" \
		--content-cache-size-mb=4000 --metadata-cache-size-mb=1000
	"$K" policy set --global --compression=none --parallel-upload-above-size-mib=8388608 >"$LOGS/policy.$ds.$rep" 2>&1
	"$K" maintenance set --enable-quick=false --enable-full=false >>"$LOGS/policy.$ds.$rep" 2>&1
	warm_or_drop "$src"
	timed "$rep" "$ds" first "$bytes" "$repo" "$K" snapshot create "$src" --parallel="$NPROC"
	warm_or_drop "$src"
	timed "$rep" "$ds" noop "$bytes" "$repo" "$K" snapshot create "$src" --parallel="$NPROC"
	"$DG" "${mut[@]}" >"$LOGS/mutate.$ds.$rep"
	warm_or_drop "$src"
	timed "$rep" "$ds" 5pct "$bytes" "$repo" "$K" snapshot create "$src" --parallel="$NPROC"
	local id
	id=$("$K" snapshot list "$src" --json | grep -o '"id": *"[^"]*"' | tail -1 | cut -d'"' -f4)
	[[ -n $id ]] || die "no snapshot of $src"
	if [[ $FRESH_FS == 1 ]]; then
		fresh_fs "$WORK/restore-fs" "$bytes"
		rst=$WORK/restore-fs/target
	fi
	warm_or_drop ""
	timed "$rep" "$ds" restore "$bytes" "" sh -c "'$K' snapshot restore '$id' '$rst' --parallel=$NPROC && sync"
	[[ $FRESH_FS == 1 ]] && umount "$WORK/restore-fs"
	unset KOPIA_CONFIG_PATH KOPIA_LOG_DIR
	rm -rf "$WORK" "$LOGS/kopia"
}

snapmove_series() { # REP DATASET
	local rep=$1 ds=$2 b la out
	check_disk
	for b in BackupFirst BackupNoop Backup5pct Restore; do
		out=$LOGS/out.snapmove.$ds.$b.$rep
		la=$(load1)
		PERF_DATA=$DATA PERF_SCALE=$SCALE PERF_PARALLEL=$NPROC PERF_DROP_CACHES=$DROP PERF_FRESH_FS=$FRESH_FS PERF_HASH=$HASH \
			"$KT" -test.run '^$' -test.bench "^Benchmark$b\$/^$ds\$" -test.benchtime 1x -test.count 1 \
			-test.timeout 2h >"$out" 2>&1 || die "snapmove $b/$ds failed: see $out"
		grep -q "^Benchmark$b/$ds" "$out" || die "snapmove $b/$ds printed no result: see $out"
		local step
		case $b in BackupFirst) step=first ;; BackupNoop) step=noop ;; Backup5pct) step=5pct ;; Restore) step=restore ;; esac
		awk -v rep="$rep" -v ds="$ds" -v step="$step" -v la="$la" '
			$1 ~ "^Benchmark" {
				for (i = 3; i < NF; i += 2) m[$(i + 1)] = $i
				wall = m["ns/op"] / 1e9
				bytes = (m["MB/s"] > 0) ? m["MB/s"] * 1e6 * wall : 0
				printf "%s\t%s\t%s\t%s\t%.3f\t%.3f\t%.1f\t%.2f\t%.0f\t%s\t%.1f\n", rep, "snapmove", ds, step, wall, m["cpu-s/GB"], m["peak-RSS-MiB"], m["repo-MB"], bytes, la, m["base-RSS-MiB"]
			}' "$out" | while IFS=$'\t' read -r -a f; do record "${f[@]}"; done
	done
}

# perf_bench REP TABLE DATASET VARIANT BENCHMARK: run one benchmark of the perf test binary
# (BENCHMARK: the -test.bench pattern) in its own process and record each metric of its
# result line as a row of table TABLE into this run's extra rows and the cumulative ones.
perf_bench() {
	local rep=$1 table=$2 ds=$3 variant=$4 pat=$5 out la
	check_disk
	out=$LOGS/out.snapmove.$table.$ds.$variant.$rep
	la=$(load1)
	PERF_DATA=$DATA PERF_SCALE=$SCALE PERF_PARALLEL=$NPROC PERF_DROP_CACHES=$DROP PERF_FRESH_FS=$FRESH_FS PERF_HASH=$HASH \
		"$KT" -test.run '^$' -test.bench "$pat" -test.benchtime 1x -test.count 1 \
		-test.timeout 2h >"$out" 2>&1 || die "snapmove $table $ds $variant failed: see $out"
	grep -q '^Benchmark' "$out" || die "snapmove $table $ds $variant printed no result: see $out"
	awk -v t="$(date -u +%H:%M:%S)" -v rep="$rep" -v table="$table" -v ds="$ds" -v v="$variant" -v la="$la" '
		$1 ~ "^Benchmark" {
			for (i = 3; i < NF; i += 2) printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t, rep, table, ds, v, $(i + 1), $i, la
		}' "$out" | tee -a "$EXTRA" "$RUN_EXTRA" >&2
}

compression_series() { # REP
	local rep=$1 ds c cs
	read -r -a cs <<<"$COMPRESSORS"
	if ((rep % 2 == 0)); then # alternate the order, as the series above alternate
		local i rev=()
		for ((i = ${#cs[@]} - 1; i >= 0; i--)); do rev+=("${cs[i]}"); done
		cs=("${rev[@]}")
	fi
	for ds in pg large; do
		for c in "${cs[@]}"; do
			perf_bench "$rep" compression "$ds" "$c" "^BenchmarkCompression\$/^$ds\$/^$c\$"
		done
	done
}

verify_series() { perf_bench "$1" verify pg - '^BenchmarkVerifyCost$/^pg$'; } # REP
many_series() { PERF_MANY_FILES=$MANY PERF_KOPIA=$K perf_bench 1 many files - '^BenchmarkManyFiles$/^files$'; }
resume_series() { perf_bench "$1" resume files - '^BenchmarkResume$/^files$'; } # REP

# is1 VALUE: true if VALUE is 1 (as the settings are read above), else false: a flag for benchreport.
is1() { if [[ $1 == 1 ]]; then echo true; else echo false; fi; }

# report: the tables, from this run's rows (hack/tools/benchreport: medians, ratios, formatting).
report() {
	"$BR" -results "$RUN_RES" -extra "$RUN_EXTRA" -logs "$LOGS" -out "$OUT" -reps "$REPS" -scale "$SCALE" \
		-cold="$(is1 "$DROP")" -fresh-fs="$(is1 "$FRESH_FS")" -block="$(is1 "$BLOCK")" -hash "$HASH" \
		-kopia-version "$("$K" --version 2>/dev/null | awk '{ print $1 }')" -cpus "$NPROC" \
		-cpu-model "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" \
		-load-start "$LOAD_START" -load-end "$(cut -d' ' -f1-3 /proc/loadavg)" \
		-compressors "$COMPRESSORS" -verify="$(is1 "$VERIFY_COST")" -resume="$(is1 "$RESUME")" -many "$MANY"
}

prepare
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
RUN_RES=$OUT/results.$(date -u +%Y%m%dT%H%M%S).tsv
head -1 "$RES" >"$RUN_RES"
RUN_EXTRA=${RUN_RES%.tsv}.extra.tsv
head -1 "$EXTRA" >"$RUN_EXTRA"
log "scale $SCALE, $REPS repetition(s), $NPROC CPUs, load $LOAD_START; rows also in $RES"
for ((rep = 1; rep <= REPS; rep++)); do
	for ds in pg large; do
		sets=("$ds")
		[[ $ds == large && $BLOCK == 1 ]] && sets+=(block cbt)
		if ((rep % 2)); then
			cli_series "$rep" "$ds"
			for s in "${sets[@]}"; do snapmove_series "$rep" "$s"; done
		else
			for s in "${sets[@]}"; do snapmove_series "$rep" "$s"; done
			cli_series "$rep" "$ds"
		fi
	done
	if [[ -n ${COMPRESSORS// /} ]]; then compression_series "$rep"; fi
	if [[ $VERIFY_COST == 1 ]]; then verify_series "$rep"; fi
	if [[ $RESUME == 1 ]]; then resume_series "$rep"; fi
done
if ((MANY > 0)); then many_series; fi
report | tee "${RUN_RES%.tsv}.txt" >&3
