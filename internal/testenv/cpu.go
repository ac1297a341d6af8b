package testenv

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CPUSnap is the machine's and every process's CPU time at one moment, to
// tell how busy the machine was during a phase and who else was using it.
type CPUSnap struct {
	at          time.Time
	total, idle uint64
	procs       map[int]procTicks
}

type procTicks struct {
	comm   string
	kernel bool   // a kernel thread
	child  bool   // a child of this process (a benchmark's writers apart)
	start  uint64 // start time, to tell a reused pid
	ticks  uint64
}

const clockTicks = 100 // USER_HZ on Linux

// SnapCPU reads the CPU time of the machine and of every process, from
// /proc. Benchmarks take one before and one after a phase.
func SnapCPU() CPUSnap {
	s := CPUSnap{at: time.Now(), procs: map[int]procTicks{}}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		fields := strings.Fields(line)
		for i, f := range fields[1:min(len(fields), 9)] {
			v, _ := strconv.ParseUint(f, 10, 64)
			s.total += v
			if i == 3 || i == 4 { // idle, iowait
				s.idle += v
			}
		}
	}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, closing := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(string(data[closing+1:]))
		if len(fields) < 20 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		utime, _ := strconv.ParseUint(fields[11], 10, 64)
		stime, _ := strconv.ParseUint(fields[12], 10, 64)
		start, _ := strconv.ParseUint(fields[19], 10, 64)
		s.procs[pid] = procTicks{
			comm:   string(data[open+1 : closing]),
			kernel: pid == 2 || ppid == 2,
			child:  ppid == self,
			start:  start,
			ticks:  utime + stime,
		}
	}
	return s
}

// CPUUse is how busy the machine was between two snapshots.
type CPUUse struct {
	Busy float64            // % of all cores
	By   map[string]float64 // % of one core, by process group
	Load string             // 1-minute load average at the end
}

// Since is the CPU used between start and end.
func (end CPUSnap) Since(start CPUSnap) CPUUse {
	u := CPUUse{By: map[string]float64{}}
	if dt := end.total - start.total; dt > 0 {
		u.Busy = 100 * float64(dt-(end.idle-start.idle)) / float64(dt)
	}
	secs := end.at.Sub(start.at).Seconds()
	self := os.Getpid()
	for pid, p := range end.procs {
		ticks := p.ticks
		if q, ok := start.procs[pid]; ok && q.start == p.start {
			ticks -= q.ticks
		}
		var group string
		switch {
		case p.kernel:
			group = "kernel"
		case pid == self:
			group = "bench"
		case p.child:
			group = "bench children"
		case p.comm == "postgres":
			group = "postgres"
		case p.comm == "beam.smp" || strings.HasPrefix(p.comm, "erl") || p.comm == "epmd":
			group = "rabbitmq"
		default:
			group = p.comm
		}
		u.By[group] += 100 * float64(ticks) / clockTicks / secs
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		u.Load, _, _ = strings.Cut(string(data), " ")
	}
	return u
}

// String reads like "busy 95%, load 2.1: bench 80%, postgres 60%,
// rabbitmq 45%, kernel threads 5%; others: outbox.test 10%" (per process
// group, % of one core); the processes this one started, when it has any,
// follow the bench as "its children 30%".
func (u CPUUse) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "busy %.0f%%, load %s: bench %.0f%%", u.Busy, u.Load, u.By["bench"])
	if c, ok := u.By["bench children"]; ok {
		fmt.Fprintf(&sb, ", its children %.0f%%", c)
	}
	fmt.Fprintf(&sb, ", postgres %.0f%%, rabbitmq %.0f%%, kernel threads %.0f%%",
		u.By["postgres"], u.By["rabbitmq"], u.By["kernel"])
	type other struct {
		name string
		pct  float64
	}
	var others []other
	for name, pct := range u.By {
		if !partOfBench(name) && pct >= 5 {
			others = append(others, other{name, pct})
		}
	}
	slices.SortFunc(others, func(a, b other) int { return cmp.Compare(b.pct, a.pct) })
	for i, o := range others {
		if i == 0 {
			sb.WriteString("; others: ")
		} else {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s %.0f%%", o.name, o.pct)
	}
	return sb.String()
}

// partOfBench reports whether a process group is part of the benchmark: this
// process and its children, Postgres, RabbitMQ and the kernel's threads
// (I/O, network).
func partOfBench(group string) bool {
	switch group {
	case "bench", "bench children", "postgres", "rabbitmq", "kernel":
		return true
	}
	return false
}

// Others is the CPU of processes that are not part of the benchmark, in %
// of one core.
func (u CPUUse) Others() float64 {
	var sum float64
	for name, pct := range u.By {
		if !partOfBench(name) {
			sum += pct
		}
	}
	return sum
}
