package retry_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopdev/shop/internal/retry"
)

func TestBackoffDoublesUpToMax(t *testing.T) {
	t.Parallel()
	b := retry.Backoff{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond}
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{0, 50 * time.Millisecond},
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 300 * time.Millisecond},
		{60, 300 * time.Millisecond}, // no overflow however long it fails
	}
	for _, tt := range tests {
		if got := b.Delay(tt.attempt); got != tt.want {
			t.Errorf("Delay(%d) = %s, want %s", tt.attempt, got, tt.want)
		}
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if retry.Sleep(ctx, time.Hour) {
		t.Fatal("Sleep of an ended context reported that it waited an hour")
	}
	if !retry.Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep(1ms) did not report that it waited")
	}
}
