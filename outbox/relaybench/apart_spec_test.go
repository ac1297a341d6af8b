package relaybench_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/internal/testenv"
)

// The writers apart (RELAYBENCH_APART=1) report exactly what they commit:
// every event the parent records is a row of the outbox, and every row of
// the outbox was recorded. No relay runs here, so the rows stay.
func TestWritersApartReportWhatTheyCommit(t *testing.T) {
	ctx := context.Background()
	cfg := config{writers: 2}
	sys, closeSys, err := oursWriters(ctx, cfg, testenv.DatabaseURL(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeSys)
	dbURL, _ := sys.endpoints()

	rec := newRecorder(0)
	w, err := startWritersApart(ctx, childSpec{contender: "ours, 1 replica", dbURL: dbURL, writers: 2, d: 300 * time.Millisecond}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.run(); err != nil {
		t.Fatal(err)
	}
	if err := w.stop(nil); err != nil {
		t.Fatal(err)
	}

	if rec.count() == 0 {
		t.Fatal("the writers recorded no commit in 300 ms")
	}
	ids := make([]uuid.UUID, 0, len(rec.at))
	for id, at := range rec.at {
		if at.IsZero() || time.Since(at) > time.Minute {
			t.Errorf("event %s recorded at %v, not during the run", id, at)
		}
		ids = append(ids, id)
	}
	if int64(len(ids)) != rec.count() {
		t.Errorf("%d distinct events recorded, %d records", len(ids), rec.count())
	}
	var rows, recorded int64
	err = sys.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE event_id = ANY($1)) FROM outbox`, ids).Scan(&rows, &recorded)
	if err != nil {
		t.Fatal(err)
	}
	if rows != recorded || recorded != int64(len(ids)) {
		t.Errorf("outbox holds %d rows, %d of them recorded; the writers recorded %d", rows, recorded, len(ids))
	}
}

// A child that cannot attach says why, and the parent reports it.
func TestWritersApartReportWhyTheyCannotStart(t *testing.T) {
	_, err := startWritersApart(context.Background(), childSpec{contender: "nobody", writers: 1, d: time.Second}, newRecorder(0))
	if err == nil || !strings.Contains(err.Error(), `no writers for contender "nobody"`) {
		t.Fatalf("got %v, want the child's reason", err)
	}
}

// With a nice value (RELAYBENCH_WRITERS_NICE), every thread of the writers'
// process runs at it: the parent's own plus that much.
func TestWritersApartRunAtTheirNiceValue(t *testing.T) {
	ctx := context.Background()
	sys, closeSys, err := oursWriters(ctx, config{writers: 2}, testenv.DatabaseURL(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeSys)
	dbURL, _ := sys.endpoints()
	want := min(niceOf(t, "/proc/self/stat")+7, 19)

	w, err := startWritersApart(ctx, childSpec{contender: "ours, 1 replica", dbURL: dbURL, writers: 2, d: 200 * time.Millisecond, nice: 7}, newRecorder(0))
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", w.cmd.Process.Pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("the writers' threads: %v, %v", tasks, err)
	}
	for _, task := range tasks {
		if got := niceOf(t, task); got != want {
			t.Errorf("%s: nice %d, want %d", task, got, want)
		}
	}
	if err := w.run(); err != nil {
		t.Fatal(err)
	}
	if err := w.stop(nil); err != nil {
		t.Fatal(err)
	}
}

// niceOf reads the nice value from a /proc stat file.
func niceOf(t *testing.T, stat string) int {
	t.Helper()
	b, err := os.ReadFile(stat)
	if err != nil {
		t.Fatal(err)
	}
	// After the command name's ")": state is field 3, nice field 19.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	nice, err := strconv.Atoi(fields[19-3])
	if err != nil {
		t.Fatalf("%s: nice %q: %v", stat, fields[19-3], err)
	}
	return nice
}
