package observability

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PoolStat is a snapshot of a database connection pool. Its fields mirror
// pgxpool.Stat so that the caller's adapter is a line per field, while this
// package stays free of the driver.
type PoolStat struct {
	TotalConns        int32         // connections open, idle or in use or being opened
	IdleConns         int32         // open connections waiting to be acquired
	AcquiredConns     int32         // connections currently in use
	MaxConns          int32         // the pool's size limit
	AcquireCount      int64         // successful acquires since the pool started
	EmptyAcquireCount int64         // acquires that found no idle connection and had to wait
	AcquireDuration   time.Duration // total time spent in successful acquires
}

// poolCollector reads the pool's statistics at scrape time rather than
// copying them into gauges on a timer: the numbers are then never stale and
// nothing runs in the background.
type poolCollector struct {
	stats atomic.Pointer[func() PoolStat]

	total, idle, acquired, maxConns   *prometheus.Desc
	acquires, emptyAcquires, waitSecs *prometheus.Desc
}

func newPoolCollector() *poolCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_db_pool_"+name, help, nil, nil)
	}
	return &poolCollector{
		total:         desc("total_connections", "Connections currently open in the database pool (idle, acquired or being opened)."),
		idle:          desc("idle_connections", "Idle connections in the database pool."),
		acquired:      desc("acquired_connections", "Connections currently acquired from the database pool."),
		maxConns:      desc("max_connections", "Maximum size of the database pool."),
		acquires:      desc("acquire_total", "Successful connection acquires from the database pool."),
		emptyAcquires: desc("empty_acquire_total", "Acquires that found no idle connection and had to wait for one."),
		waitSecs:      desc("acquire_wait_seconds_total", "Total time spent acquiring connections from the database pool, in seconds."),
	}
}

func (c *poolCollector) set(stats func() PoolStat) {
	if stats == nil {
		c.stats.Store(nil)
		return
	}
	c.stats.Store(&stats)
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.total, c.idle, c.acquired, c.maxConns, c.acquires, c.emptyAcquires, c.waitSecs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. Without a pool it reports nothing:
// zeros would claim a pool of size zero.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.stats.Load()
	if f == nil {
		return
	}
	s := (*f)()
	gauge := func(d *prometheus.Desc, v int32) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(c.total, s.TotalConns)
	gauge(c.idle, s.IdleConns)
	gauge(c.acquired, s.AcquiredConns)
	gauge(c.maxConns, s.MaxConns)
	counter(c.acquires, float64(s.AcquireCount))
	counter(c.emptyAcquires, float64(s.EmptyAcquireCount))
	counter(c.waitSecs, s.AcquireDuration.Seconds())
}
