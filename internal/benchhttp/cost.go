package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi/internal/benchkit"
	"github.com/saasapi/saasapi/internal/pgcluster"
)

// A cost is what one request (or pgbench transaction) of a workload took
// of the machine: CPU of the served process, of PostgreSQL (the postmaster
// and every process it forked) and of the client (wrk or pgbench), and the
// WAL it wrote. It tells where a workload's time goes when the ratios
// fall short, since all of them share the same cores.
type cost struct {
	serviceUS, postgresUS, clientUS float64 // CPU microseconds per request
	walBytes                        float64 // WAL bytes per request
}

// meter reads the counters a cost is the difference of.
type meter struct {
	servicePID, postmasterPID int
	servicePIDB               int       // the compared process, B (0: none)
	conn                      *pgx.Conn // to the cluster, for its WAL position
}

// reading is the counters at one moment.
type reading struct {
	service, postgres time.Duration
	wal               int64
}

// read reads the counters; b selects the compared process as the service.
func (m *meter) read(ctx context.Context, b bool) (reading, error) {
	var r reading
	var err error
	pid := m.servicePID
	if b {
		pid = m.servicePIDB
	}
	if r.service, err = processCPU(pid, false); err != nil {
		return r, err
	}
	if r.postgres, err = treeCPU(m.postmasterPID); err != nil {
		return r, err
	}
	err = m.conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint`).Scan(&r.wal)
	return r, err
}

// costOf is the cost per request of n requests between before and after,
// with the client's own CPU time.
func costOf(before, after reading, client time.Duration, n float64) cost {
	if n <= 0 {
		return cost{}
	}
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
	return cost{serviceUS: us(after.service - before.service), postgresUS: us(after.postgres - before.postgres),
		clientUS: us(client), walBytes: float64(after.wal-before.wal) / n}
}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// processCPU returns the CPU time pid used, with that of its waited-for
// children when children is set (/proc/pid/stat fields 14-17).
func processCPU(pid int, children bool) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	n := 2
	if children {
		n = 4
	}
	var ticks int64
	for _, s := range f[11 : 11+n] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * clockTick, nil
}

// treeCPU returns the CPU time of the postmaster pid and its processes:
// the live ones and, through the postmaster's children times, those that
// exited (pgbench's backends end with their run).
func treeCPU(pid int) (time.Duration, error) {
	total, err := processCPU(pid, true)
	if err != nil {
		return 0, err
	}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		child, err := strconv.Atoi(filepath.Base(d))
		if err != nil || child == pid {
			continue
		}
		f, err := statFields(child)
		if err != nil || len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue // gone since the listing, or not the postmaster's
		}
		if t, err := processCPU(child, false); err == nil {
			total += t
		}
	}
	return total, nil
}

// statFields returns the fields of /proc/pid/stat after the command name,
// so that field 3 of proc(5) (the state) is index 0.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	return parseStat(string(b), pid)
}

// parseStat splits a /proc/pid/stat line after the command name, which
// is in parentheses and may itself hold parentheses and spaces.
func parseStat(s string, pid int) ([]string, error) {
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	return f, nil
}

// newMeter reads the counters of the cluster and of the served processes
// (b, the compared one, may be nil).
func newMeter(ctx context.Context, c *pgcluster.Cluster, a, b *benchkit.Server) (*meter, error) {
	pid, err := c.PID()
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return nil, err
	}
	m := &meter{servicePID: a.Cmd.Process.Pid, postmasterPID: pid, conn: conn}
	if b != nil {
		m.servicePIDB = b.Cmd.Process.Pid
	}
	return m, nil
}

// String is a cost as the round lines show it.
func (c cost) String() string {
	return fmt.Sprintf("cpu/req µs: service %.0f, postgres %.0f, client %.0f; WAL %.0f B/req",
		c.serviceUS, c.postgresUS, c.clientUS, c.walBytes)
}
