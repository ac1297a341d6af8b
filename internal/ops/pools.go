package ops

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// DBPool exports a pgx pool's statistics as shop_db_pool_*, labelled
// pool=name (a process may hold several: the API's, the relay's, the
// consumers'). How full it is, and how long requests waited for a
// connection, say whether DB_MAX_CONNS is too small.
func DBPool(name string, pool *pgxpool.Pool) prometheus.Collector {
	return statsCollector{
		descs: dbPoolDescs(name),
		values: func() []float64 {
			s := pool.Stat()
			return []float64{float64(s.AcquiredConns()), float64(s.IdleConns()), float64(s.TotalConns()), float64(s.MaxConns()),
				float64(s.AcquireCount()), float64(s.EmptyAcquireCount()), float64(s.CanceledAcquireCount()), s.AcquireDuration().Seconds()}
		},
	}
}

func dbPoolDescs(name string) []desc {
	l := prometheus.Labels{"pool": name}
	return []desc{
		{prometheus.NewDesc("shop_db_pool_acquired_conns", "Postgres connections in use.", nil, l), prometheus.GaugeValue},
		{prometheus.NewDesc("shop_db_pool_idle_conns", "Postgres connections idle in the pool.", nil, l), prometheus.GaugeValue},
		{prometheus.NewDesc("shop_db_pool_total_conns", "Postgres connections open.", nil, l), prometheus.GaugeValue},
		{prometheus.NewDesc("shop_db_pool_max_conns", "The most connections the pool may open.", nil, l), prometheus.GaugeValue},
		{prometheus.NewDesc("shop_db_pool_acquires_total", "Connections taken from the pool.", nil, l), prometheus.CounterValue},
		{prometheus.NewDesc("shop_db_pool_empty_acquires_total", "Connections taken when none was idle: the request waited for one to open or come back.", nil, l), prometheus.CounterValue},
		{prometheus.NewDesc("shop_db_pool_canceled_acquires_total", "Waits for a connection given up (the request's context ended).", nil, l), prometheus.CounterValue},
		{prometheus.NewDesc("shop_db_pool_acquire_seconds_total", "Time spent taking connections from the pool.", nil, l), prometheus.CounterValue},
	}
}

// RedisPool exports a go-redis client's pool statistics as
// shop_redis_pool_*, labelled pool=name.
func RedisPool(name string, client *redis.Client) prometheus.Collector {
	l := prometheus.Labels{"pool": name}
	return statsCollector{
		descs: []desc{
			{prometheus.NewDesc("shop_redis_pool_hits_total", "Commands that found an idle Redis connection.", nil, l), prometheus.CounterValue},
			{prometheus.NewDesc("shop_redis_pool_misses_total", "Commands that had to open a Redis connection.", nil, l), prometheus.CounterValue},
			{prometheus.NewDesc("shop_redis_pool_timeouts_total", "Commands that waited too long for a Redis connection.", nil, l), prometheus.CounterValue},
			{prometheus.NewDesc("shop_redis_pool_total_conns", "Redis connections open.", nil, l), prometheus.GaugeValue},
			{prometheus.NewDesc("shop_redis_pool_idle_conns", "Redis connections idle in the pool.", nil, l), prometheus.GaugeValue},
		},
		values: func() []float64 {
			s := client.PoolStats()
			return []float64{float64(s.Hits), float64(s.Misses), float64(s.Timeouts), float64(s.TotalConns), float64(s.IdleConns)}
		},
	}
}

type desc struct {
	*prometheus.Desc
	kind prometheus.ValueType
}

// statsCollector reads a pool's statistics at each scrape: values returns
// them in the order of descs.
type statsCollector struct {
	descs  []desc
	values func() []float64
}

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d.Desc
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	for i, v := range c.values() {
		ch <- prometheus.MustNewConstMetric(c.descs[i].Desc, c.descs[i].kind, v)
	}
}
