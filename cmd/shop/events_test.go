package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/shopdev/shop/handlers"
)

// These tests run shop events in this process: they need no service.

// TestEventsListsEveryEvent: shop events prints a row for every routing
// key the registry binds, with every group whose queue is bound to it, and
// a summary; shop help lists the command.
func TestEventsListsEveryEvent(t *testing.T) {
	t.Parallel()
	stdout, stderr, code := shopInProcess(nil, "events")
	if code != 0 || stderr != "" {
		t.Fatalf("shop events: exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if !regexp.MustCompile(`^ROUTING KEY +CONSUMED BY +SUMMARY$`).MatchString(lines[0]) {
		t.Errorf("header %q, want ROUTING KEY, CONSUMED BY, SUMMARY", lines[0])
	}
	column := strings.Index(lines[0], "SUMMARY")
	groups := map[string][]string{} // routing key → the groups bound to it
	for _, r := range handlers.Topology() {
		for _, k := range r.Keys {
			groups[k] = append(groups[k], r.Group)
		}
	}
	rows := map[string]string{}
	for _, line := range lines[1:] {
		key, _, _ := strings.Cut(line, " ")
		rows[key] = line
		if len(line) <= column || strings.TrimSpace(line[column:]) == "" || line[column-1] != ' ' {
			t.Errorf("row %q has no summary in the SUMMARY column", line)
		}
	}
	for key, want := range groups {
		row, ok := rows[key]
		if !ok {
			t.Errorf("shop events has no row for %s:\n%s", key, stdout)
			continue
		}
		for _, g := range want {
			if !strings.Contains(row, g) {
				t.Errorf("row %q does not name %s, which consumes %s", row, g, key)
			}
		}
	}
	if len(rows) != len(groups) {
		t.Errorf("shop events lists %d events, the topology binds %d", len(rows), len(groups))
	}
	if help, _, _ := shopInProcess(nil, "help"); !strings.Contains(help, "events [--markdown]") {
		t.Error("shop help does not list shop events")
	}
	if _, stderr, code := shopInProcess(nil, "events", "extra"); code != 2 {
		t.Errorf("shop events extra: exit %d (%s), want 2", code, stderr)
	}
}

// TestReadmeEventTableIsShopEvents: the README's event table is what shop
// events --markdown prints, between its markers.
func TestReadmeEventTableIsShopEvents(t *testing.T) {
	t.Parallel()
	table, stderr, code := shopInProcess(nil, "events", "--markdown")
	if code != 0 {
		t.Fatalf("shop events --markdown: exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(table, "| routing key | consumed by | summary |\n|---|---|---|\n| `") {
		t.Errorf("shop events --markdown does not print a Markdown table:\n%s", table)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- events:begin -->\n", "<!-- events:end -->"
	_, rest, ok := strings.Cut(string(readme), begin)
	section, _, closed := strings.Cut(rest, end)
	if !ok || !closed {
		t.Fatalf("README.md has no event table between %q and %q lines; add them, and between them paste the output of `shop events --markdown`:\n%s", strings.TrimSpace(begin), end, table)
	}
	if section != table {
		t.Errorf("README.md's event table differs from `shop events --markdown` (api/asyncapi.yaml); paste this between its %q and %q lines:\n%s", strings.TrimSpace(begin), end, table)
	}
}
