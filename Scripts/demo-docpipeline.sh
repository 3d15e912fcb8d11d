#!/usr/bin/env bash
# The small demo (the main one is Scripts/demo.sh, the claims sample): crash a worker in the middle
# of a document pipeline and watch a new worker finish every run without redoing recorded work.
#
#   bash Scripts/demo-docpipeline.sh   (from the repository root; needs only the Swift toolchain)
#
# What it does, in a fresh temporary folder:
#   1. builds doc-pipeline (Samples/DocPipeline) and the code-less durable CLI;
#   2. starts a worker in the background and submits four documents;
#   3. kills the worker with kill -9 while the runs are half done;
#   4. starts a second worker, which replays the histories and finishes the runs;
#   5. shows runs, a history and a replay, and checks which activities ran twice.
# Exits non-zero if any step or check fails.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

source Scripts/demo-helpers.sh

# ---------------------------------------------------------------------------------------------
section "1. Build"

bash Scripts/install-deps.sh
swift build --product doc-pipeline
swift build --product durable
BIN="$(swift build --show-bin-path)"
APP="$BIN/doc-pipeline"
DURABLE="$BIN/durable"
[ -x "$APP" ] && [ -x "$DURABLE" ] || fail "built binaries not found in $BIN"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/durable-demo.XXXXXX")"
JOURNAL="$WORK/journal.sqlite"
export DURABLE_JOURNAL="$JOURNAL"     # every doc-pipeline and durable command below uses it
export DOC_PIPELINE_OUT="$WORK/out"   # where the Store activity writes records
DOCS=(doc-1 doc-2 doc-3 doc-4)
ACTIVITIES=(Extract Classify Summarize DetectLanguage ExtractEntities Store)

WORKER_PID=""
cleanup() {
  if [ -n "$WORKER_PID" ] && kill -0 "$WORKER_PID" 2>/dev/null; then
    kill "$WORKER_PID" 2>/dev/null || true
    wait "$WORKER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "binaries:    $BIN  (doc-pipeline, durable)"
echo "work folder: $WORK  (journal, worker logs, output records; kept for you to inspect)"

# Starts `doc-pipeline worker` in the background, logging to $1; waits until it is up.
start_worker() {
  local log="$1"
  step "doc-pipeline worker > $(basename "$log") 2>&1 &"
  "$APP" worker >"$log" 2>&1 &
  WORKER_PID=$!
  wait_for_line "$log" '^worker pid' "$WORKER_PID" 10 "the worker did not start within 10 s"
  echo "worker running as pid $WORKER_PID"
}

# Counts completed runs, and completed activities over all runs.
count_completed_runs() { "$DURABLE" runs list --json | grep -c '"status" : "completed"' || true; }
count_completed_activities() {
  local total=0 n
  for doc in "${DOCS[@]}"; do
    n=$("$APP" history "$doc" --json 2>/dev/null | grep -c '^    "kind" : "ActivityCompleted"' || true)
    total=$((total + n))
  done
  echo "$total"
}

# Prints the names of the activities whose completion history records, one per line.
completed_activity_names() {
  "$APP" history "$1" --json | awk '
    /^  [{]/            { kind = ""; name = ""; seq = "" }
    /^    "kind" : /    { kind = $3; gsub(/[",]/, "", kind) }
    /^    "name" : /    { name = $3; gsub(/[",]/, "", name) }
    /^    "seq" : /     { seq = $3; gsub(/,/, "", seq) }
    /^  [}]/            { if (kind == "ActivityScheduled") scheduled[seq] = name
                          if (kind == "ActivityCompleted") done[seq] = 1 }
    END                 { for (s in done) print scheduled[s] }'
}

# ---------------------------------------------------------------------------------------------
section "2. Start a worker and submit four documents"

mkdir -p "$WORK/docs"
cat >"$WORK/docs/doc-1.json" <<'EOF'
{"id": "doc-1", "title": "Invoice INV-2024-0117",
 "text": "Dear customer, please find our invoice INV-2024-0117 for the March delivery. The total amount due is €1,250.00 including VAT. Payment is due by 2024-04-15 to IBAN DE89 3704 0044 0532 0130 00. Questions? Write to billing@acme-logistics.example. Kind regards, Anna Schmidt, Acme Logistics GmbH."}
EOF
cat >"$WORK/docs/doc-2.json" <<'EOF'
{"id": "doc-2", "title": "Schadenmeldung Kfz",
 "text": "Sehr geehrte Damen und Herren, am 03.05.2024 wurde mein Fahrzeug bei einem Unfall auf der A8 beschädigt. Der Schaden an der Stoßstange beträgt laut Gutachten 2.430,00 EUR. Die Versicherung ist unter der Police KV-88123 abgeschlossen. Bitte melden Sie sich unter jonas.weber@example.de. Mit freundlichen Grüßen, Jonas Weber."}
EOF
cat >"$WORK/docs/doc-3.json" <<'EOF'
{"id": "doc-3", "title": "Ticket: connexion impossible",
 "text": "Bonjour, depuis la mise à jour du 12/06/2024, l'application plante à chaque connexion. Le message d'erreur indique une session expirée et je ne peux plus accéder à mon compte. Le problème touche aussi mes collègues de l'équipe comptable. Merci de traiter ce ticket en priorité. Claire Dubois, support@dubois-conseil.example"}
EOF
cat >"$WORK/docs/doc-4.json" <<'EOF'
{"id": "doc-4", "title": "Q1 results",
 "text": "Quarterly results: revenue grew 14 percent to $2.4 million, driven by 320 new customers in the Nordic market. Growth in the enterprise segment offset a weaker forecast for retail. The board, chaired by Maria Lindqvist, approved the plan on 2024-04-30. Contact investor.relations@northwind.example for the full report."}
EOF

start_worker "$WORK/worker-1.log"
for doc in doc-1 doc-2 doc-3; do
  show "$APP" submit ProcessDocument --id "$doc" --input "@$WORK/docs/$doc.json"
done
echo "# the code-less durable CLI can submit too, now that a worker has registered the workflow type:"
show "$DURABLE" submit ProcessDocument --id doc-4 --input "@$WORK/docs/doc-4.json"
echo "# and it lists runs without any workflow code:"
show "$DURABLE" runs list --journal "$JOURNAL"

# ---------------------------------------------------------------------------------------------
section "3. Wait until the runs are half done, then kill -9 the worker"

# The workflow schedules the four analyses of a document only after Extract's result is committed,
# so an analysis line in the worker's log proves recorded progress. Watch the log (cheap, no journal
# reads) until every document is in its analysis phase, give the first analyses a moment to finish,
# then kill the worker without warning.
analyses='\] (Classify|Summarize|DetectLanguage|ExtractEntities) doc-'
deadline=$((SECONDS + 30))
until [ "$(grep -cE "$analyses" "$WORK/worker-1.log" || true)" -ge $((4 * ${#DOCS[@]})) ]; do
  kill -0 "$WORKER_PID" 2>/dev/null || { print_log "$WORK/worker-1.log" worker-1; fail "the worker died on its own"; }
  [ "$SECONDS" -lt "$deadline" ] || { print_log "$WORK/worker-1.log" worker-1; fail "the runs did not reach their analyses within 30 s"; }
  sleep 0.02
done
sleep 0.3
{ kill -9 "$WORKER_PID"; wait "$WORKER_PID"; } 2>/dev/null || true  # (quiet: no "Killed" notice)
killed_pid=$WORKER_PID
WORKER_PID=""
activities_done=$(count_completed_activities)
runs_done=$(count_completed_runs)
echo "kill -9 $killed_pid: the journal holds $activities_done of $(( ${#DOCS[@]} * ${#ACTIVITIES[@]} )) completed activities and $runs_done of ${#DOCS[@]} completed runs"
[ "$runs_done" -lt "${#DOCS[@]}" ] || fail "every run had completed before the kill; nothing left to recover"
[ "$activities_done" -ge 1 ] || fail "no activity had completed before the kill"

echo "# what the killed worker printed:"
print_log "$WORK/worker-1.log" worker-1
echo "# the runs are still open:"
show "$DURABLE" runs list
open_runs=$("$DURABLE" runs list --json | grep -c '"status" : "running"' || true)
[ "$open_runs" -ge 1 ] || fail "expected open (running) runs after the kill"

# What the journal had recorded when the worker died: completed activities per document.
for doc in "${DOCS[@]}"; do
  completed_activity_names "$doc" | sort >"$WORK/before-kill.$doc"
  echo "$doc: recorded before the crash: $(tr '\n' ' ' <"$WORK/before-kill.$doc")"
done

# ---------------------------------------------------------------------------------------------
section "4. Start a new worker: it replays the histories and finishes the runs"

start_worker "$WORK/worker-2.log"
deadline=$((SECONDS + 60))
while :; do
  runs_done=$(count_completed_runs)
  [ "$runs_done" -ge "${#DOCS[@]}" ] && break
  if ! kill -0 "$WORKER_PID" 2>/dev/null; then
    print_log "$WORK/worker-2.log" worker-2
    fail "the second worker exited before the runs completed"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    print_log "$WORK/worker-2.log" worker-2
    "$DURABLE" runs list || true
    fail "only $runs_done of ${#DOCS[@]} runs completed within 60 s of the restart"
  fi
  sleep 0.2
done
ok "all ${#DOCS[@]} runs completed"
kill -TERM "$WORKER_PID"  # a clean stop this time
worker_status=0
wait "$WORKER_PID" 2>/dev/null || worker_status=$?
WORKER_PID=""
echo "# what the second worker printed (it was stopped with SIGTERM once the runs were done):"
print_log "$WORK/worker-2.log" worker-2
[ "$worker_status" -eq 0 ] || fail "the second worker exited with status $worker_status after SIGTERM"

# ---------------------------------------------------------------------------------------------
section "5. Inspect"

show "$DURABLE" runs list
echo
# A run the crash interrupted: its history shows the attempt the killed worker lost.
shown=doc-1
for doc in "${DOCS[@]}"; do
  if [ "$(wc -l <"$WORK/before-kill.$doc")" -lt "${#ACTIVITIES[@]}" ]; then shown=$doc; break; fi
done
show "$APP" runs show "$shown"
echo
show "$APP" history "$shown"
echo
show "$APP" replay "$shown"
for doc in "${DOCS[@]}"; do
  "$APP" replay "$doc" >/dev/null || fail "replay of $doc does not match its history"
done
ok "the code replays all ${#DOCS[@]} histories without a mismatch"
echo
echo "# the stored records:"
field() { grep -m1 "\"$1\" :" "$2" | sed -e 's/.*: //' -e 's/[",]//g'; }  # field NAME FILE
for doc in "${DOCS[@]}"; do
  file="$DOC_PIPELINE_OUT/$doc.json"
  [ -f "$file" ] || fail "Store did not write $file"
  printf '%s: %-16s language %-3s record %s\n' "$doc" "$(field category "$file")" "$(field language "$file")" "$(field recordID "$file")"
  # The record ID comes from ctx.uuid(): replay must give the same one, so the file (written by
  # whichever Store attempt ran last) and the run's result must agree.
  result_id=$("$APP" runs show "$doc" --json | awk -F'"' '/"recordID" :/ && !found { print $4; found = 1 }')
  [ "$result_id" = "$(field recordID "$file")" ] || fail "$doc: record ID in $file differs from the run's result ($result_id)"
done
ok "every record file matches its run's result (record IDs from ctx.uuid() survived the crash)"
step "cat out/doc-1.json"
cat "$DOC_PIPELINE_OUT/doc-1.json"
echo

# ---------------------------------------------------------------------------------------------
section "6. Which activities ran again after the crash?"

# Each worker printed "  [pid N] <Activity> <doc> (attempt A)" when an attempt started.
printf '%-6s %-16s %-9s %-9s %-9s %s\n' DOC ACTIVITY "WORKER-1" "WORKER-2" RECORDED "VERDICT"
violations=0; reran=0; once=0; after=0
for doc in "${DOCS[@]}"; do
  final=$(completed_activity_names "$doc")
  for activity in "${ACTIVITIES[@]}"; do
    n1=$(grep -c "\] $activity $doc (attempt" "$WORK/worker-1.log" || true)
    n2=$(grep -c "\] $activity $doc (attempt" "$WORK/worker-2.log" || true)
    recorded="no"
    grep -qx "$activity" "$WORK/before-kill.$doc" && recorded="yes"
    if ! grep -qx "$activity" <<<"$final"; then
      verdict="NOT COMPLETED"; violations=$((violations + 1))
    elif [ "$recorded" = yes ]; then
      if [ "$n2" -eq 0 ]; then verdict="done before the crash, not re-run"; once=$((once + 1))
      else verdict="RE-RAN ALTHOUGH RECORDED"; violations=$((violations + 1)); fi
    elif [ "$n1" -gt 0 ]; then
      if [ "$n2" -eq 1 ] && grep -q "\] $activity $doc (attempt 2" "$WORK/worker-2.log"; then
        verdict="in flight at the crash, re-ran once as attempt 2"; reran=$((reran + 1))
      elif [ "$n2" -eq 1 ]; then verdict="RE-RAN WITHOUT THE NEXT ATTEMPT NUMBER"; violations=$((violations + 1))
      else verdict="UNEXPECTED: ran $n2 times after the restart"; violations=$((violations + 1)); fi
    else
      if [ "$n2" -eq 1 ]; then verdict="first ran after the restart"; after=$((after + 1))
      else verdict="UNEXPECTED: ran $n2 times after the restart"; violations=$((violations + 1)); fi
    fi
    printf '%-6s %-16s %-9s %-9s %-9s %s\n' "$doc" "$activity" "$n1" "$n2" "$recorded" "$verdict"
  done
done
echo
echo "$once activities were recorded before the crash and did not run again;"
echo "$reran were in flight when the worker was killed and ran again as attempt 2 (attempt 1 is recorded"
echo "   as lost: WorkerLost; the idempotency key stays the same);"
echo "$after ran only after the restart."
[ "$violations" -eq 0 ] || fail "$violations activity check(s) failed (see the table above)"
[ "$once" -ge 1 ] || fail "no activity had completed before the crash, so the check proved nothing"
ok "no activity whose completion was recorded ran again"

section "Done"
echo "Everything is in $WORK: journal.sqlite, worker-1.log, worker-2.log, out/*.json."
echo "Try: DURABLE_JOURNAL=$JOURNAL $DURABLE history doc-2"
