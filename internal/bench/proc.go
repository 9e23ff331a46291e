package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux this runs on.
const clockTicks = 100

// procRSS returns the resident set size of pid in bytes (VmRSS).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// procCPU returns the CPU time (user + system) pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// selfCPU is the generator's own CPU time, its worker processes included.
func selfCPU() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration {
		return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
	}
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// loadAvg returns the 1-minute load average, to say how busy the machine was.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// cpuMeter measures the CPU the broker's processes and the generator use
// over an interval.
type cpuMeter struct {
	pids    []int
	broker0 time.Duration
	self0   time.Duration
	wall0   time.Time
}

// startCPU starts measuring the broker processes pids (one, or a cluster's
// nodes) and the generator.
func startCPU(pids ...int) *cpuMeter {
	m := &cpuMeter{pids: pids, self0: selfCPU(), wall0: time.Now()}
	m.broker0 = sumCPU(pids)
	return m
}

// stop returns broker CPU, generator CPU and wall time since start.
func (m *cpuMeter) stop() (broker, self, wall time.Duration) {
	return sumCPU(m.pids) - m.broker0, selfCPU() - m.self0, time.Since(m.wall0)
}

func sumCPU(pids []int) time.Duration {
	var d time.Duration
	for _, pid := range pids {
		c, _ := procCPU(pid)
		d += c
	}
	return d
}

// sumRSS is the resident set size of pids together.
func sumRSS(pids []int) (int64, error) {
	var n int64
	for _, pid := range pids {
		r, err := procRSS(pid)
		if err != nil {
			return 0, err
		}
		n += r
	}
	return n, nil
}
