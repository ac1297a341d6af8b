// Command ackcost measures what RabbitMQ's own CPU pays per message on a
// quorum queue: publishing with confirms, then consuming with one ack per
// message or one ack (multiple) per K messages. It reads the broker's CPU
// time from /proc/PID/stat, so it runs on the broker's machine.
//
// With -rate R it measures the same at a pace instead: one message every
// 1/R s, each published and its confirm awaited while a consumer acks each
// delivery as it comes, as a pipeline under light traffic does; the broker's
// CPU over the whole is divided by the messages.
//
// Usage: ackcost -url AMQP_URL -beam PID [-n 20000] [-ack-every 1] [-consumers 1] [-prefetch 32] [-rate 0] [-queue-type quorum]
// (scripts/bench-ackcost.sh runs it in a vhost of its own.)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ackcost:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "", "AMQP URL, vhost included")
	beam := flag.Int("beam", 0, "the broker's process id")
	n := flag.Int("n", 20000, "messages")
	every := flag.Int("ack-every", 1, "ack every K deliveries (K > 1: one ack with multiple=true)")
	consumers := flag.Int("consumers", 1, "consuming channels")
	prefetch := flag.Int("prefetch", 32, "prefetch per consuming channel")
	queueType := flag.String("queue-type", "quorum", "the queue's type: quorum (shop's) or classic")
	rate := flag.Float64("rate", 0, "messages per second, published one at a time and consumed as they come; 0: as fast as it goes, publishing first")
	flag.Parse()
	if *url == "" || *beam <= 0 || *n < 1 || *every < 1 || *consumers < 1 || *n%*consumers != 0 {
		return errors.New("need -url, -beam, positive -n, -ack-every, -consumers, and -n a multiple of -consumers")
	}
	conn, err := amqp.Dial(*url)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	const queue = "ackcost"
	if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
		return fmt.Errorf("delete queue: %w", err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": *queueType}); err != nil {
		return fmt.Errorf("declare queue: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}

	body := []byte(strings.Repeat("x", 600)) // about an envelope's size
	if *rate > 0 {
		return paced(conn, ch, queue, body, *beam, *n, *rate)
	}
	cpu0, err := cpuTicks(*beam)
	if err != nil {
		return err
	}
	start := time.Now()
	for sent := 0; sent < *n; {
		var pending []*amqp.DeferredConfirmation
		for ; sent < *n && len(pending) < 50; sent++ {
			dc, err := ch.PublishWithDeferredConfirm("", queue, true, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			pending = append(pending, dc)
		}
		for _, dc := range pending {
			if ok, err := dc.WaitContext(context.Background()); err != nil || !ok {
				return fmt.Errorf("confirm: ok=%v: %v", ok, err)
			}
		}
	}
	published := time.Since(start)
	cpu1, err := cpuTicks(*beam)
	if err != nil {
		return err
	}

	start = time.Now()
	per := *n / *consumers
	errs := make(chan error, *consumers)
	for range *consumers {
		cch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("consumer channel: %w", err)
		}
		if err := cch.Qos(*prefetch, 0, false); err != nil {
			return fmt.Errorf("qos: %w", err)
		}
		deliveries, err := cch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("consume: %w", err)
		}
		go func() { errs <- consume(cch, deliveries, per, *every) }()
	}
	for range *consumers {
		if err := <-errs; err != nil {
			return err
		}
	}
	consumed := time.Since(start)
	cpu2, err := cpuTicks(*beam)
	if err != nil {
		return err
	}
	perMsg := func(ticks int64) float64 { return float64(ticks) * 1e6 / ticksPerSecond / float64(*n) }
	fmt.Printf("n=%d ack-every=%d consumers=%d prefetch=%d: publish %.0f msg/s, broker %.1f µs/msg; consume+ack %.0f msg/s, broker %.1f µs/msg\n",
		*n, *every, *consumers, *prefetch,
		float64(*n)/published.Seconds(), perMsg(cpu1-cpu0), float64(*n)/consumed.Seconds(), perMsg(cpu2-cpu1))
	return nil
}

// paced publishes n messages, one every 1/rate s, each awaiting its
// confirm, while a consumer on a channel of its own acks every delivery;
// it prints the broker's CPU per message over the whole.
func paced(conn *amqp.Connection, ch *amqp.Channel, queue string, body []byte, beam, n int, rate float64) error {
	cch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("consumer channel: %w", err)
	}
	deliveries, err := cch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	consumed := make(chan error, 1)
	cpu0, err := cpuTicks(beam)
	if err != nil {
		return err
	}
	start := time.Now()
	go func() { consumed <- consume(cch, deliveries, n, 1) }()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for range n {
		<-tick.C
		dc, err := ch.PublishWithDeferredConfirm("", queue, true, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if ok, err := dc.WaitContext(context.Background()); err != nil || !ok {
			return fmt.Errorf("confirm: ok=%v: %v", ok, err)
		}
	}
	if err := <-consumed; err != nil {
		return err
	}
	took := time.Since(start)
	cpu1, err := cpuTicks(beam)
	if err != nil {
		return err
	}
	fmt.Printf("n=%d rate=%.0f/s: %.0f msg/s published, confirmed, delivered and acked; broker %.1f µs/msg, %.1f %% of a core\n",
		n, rate, float64(n)/took.Seconds(), float64(cpu1-cpu0)*1e6/ticksPerSecond/float64(n),
		float64(cpu1-cpu0)*100/ticksPerSecond/took.Seconds())
	return nil
}

// consume acks want deliveries, every K-th with multiple=true (and the
// last), then closes its channel.
func consume(ch *amqp.Channel, deliveries <-chan amqp.Delivery, want, every int) error {
	defer func() { _ = ch.Close() }()
	got := 0
	for d := range deliveries {
		got++
		if got%every == 0 || got == want {
			if err := d.Ack(every > 1); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		}
		if got == want {
			return nil
		}
	}
	return fmt.Errorf("deliveries ended after %d of %d", got, want)
}

// ticksPerSecond is Linux's USER_HZ, the unit of /proc/PID/stat's times.
const ticksPerSecond = 100

// cpuTicks returns the user and system CPU time of process pid, in ticks.
func cpuTicks(pid int) (int64, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("broker cpu: %w", err)
	}
	// The command name (field 2) may hold spaces; count from after it.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, errors.New("broker cpu: short /proc stat")
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("broker cpu: %w", err)
	}
	return utime + stime, nil
}
