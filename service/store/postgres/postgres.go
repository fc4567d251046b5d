// Package postgres owns the shared store: a store.Store kept in PostgreSQL,
// so that several hsmkms replicas serving one HSM share their keys,
// versions, aliases, principals, external key stores and settings.
//
// Records are kept as the same JSON the bolt store writes, one table per
// kind. Writes run in REPEATABLE READ transactions that end by raising the
// store's revision (one row, so writers commit one at a time in revision
// order) and by listing what they wrote in a change feed, announced with
// NOTIFY. Each process follows the feed to keep a cache of hot records
// coherent, which is what keeps the database off the hot path. A write
// that loses a race (a serialisation failure) is retried, running fn
// again, as the Store contract allows.
//
// The schema is migrated at Open, under an advisory lock, from migrations
// embedded in the binary (schema/).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hsmkms/hsmkms/service/store"
)

// Config configures a Store.
type Config struct {
	// URL is a PostgreSQL connection URL or keyword/value string. libpq's
	// PG* environment variables (PGHOST, PGPASSWORD, PGPASSFILE, …) fill in
	// what it leaves out.
	URL string
	// Password, when set, replaces the URL's password (hsmkms reads it from
	// a file). It never appears in an error or a log line.
	Password string
	// Logger receives the store's warnings (the change feed lost, found
	// again). Nil discards them.
	Logger hclog.Logger
	// MaxStale bounds how old the cache may be: a change another replica
	// commits is seen within MaxStale, or the cache is not used and reads
	// go to the database. Default 1 s.
	MaxStale time.Duration
	// PollInterval is how often the change feed is read when no
	// notification arrives. Default 200 ms.
	PollInterval time.Duration
	// OpTimeout bounds each database round trip's wait when the caller's
	// context allows longer, so that an unreachable database fails a
	// request fast. Default 5 s.
	OpTimeout time.Duration
}

func (c *Config) defaults() {
	if c.MaxStale <= 0 {
		c.MaxStale = time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

// connectTimeout bounds a new connection's set-up when the URL sets none.
const connectTimeout = 3 * time.Second

// maxAttempts bounds how often Update runs fn when it loses races, and
// maxRetryWait the random wait before one more attempt. The waits double
// from 2 ms up to the cap, so 40 attempts span about 1.5 s on average:
// enough for tens of writers on one record, from every replica, to get
// through one after another. (20 attempts with waits growing by 2 ms
// each ran out once in CI, with eight writers on one record on a loaded
// machine.)
const (
	maxAttempts  = 40
	maxRetryWait = 64 * time.Millisecond
)

// retryWait is a random wait before attempt+1: full jitter, so writers
// that lost the same race do not meet again.
func retryWait(attempt int) time.Duration {
	ceil := min(time.Millisecond<<min(attempt, 7), maxRetryWait)
	return time.Duration(rand.Int64N(int64(ceil)) + 1)
}

// Store is a store.Store in a PostgreSQL database. It is safe for
// concurrent use, and several processes may share one database.
type Store struct {
	cfg     Config
	pool    *pgxpool.Pool
	listen  *pgx.ConnConfig
	records *recordCache
	closed  atomic.Bool
	stop    context.CancelFunc
	done    chan struct{}
	// began counts database transactions, so that tests can tell the
	// cache answered.
	began atomic.Uint64
}

var _ store.Store = (*Store)(nil)

// Open connects to the database, migrates its schema and starts following
// the change feed. It fails with an error wrapping store.ErrUnavailable
// when the database cannot be reached.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.defaults()
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgconn's parse errors show the URL with its password masked.
		return nil, fmt.Errorf("store: the PostgreSQL URL: %w", err)
	}
	if cfg.Password != "" {
		pcfg.ConnConfig.Password = cfg.Password
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "hsmkms"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{cfg: cfg, pool: pool, listen: pcfg.ConnConfig.Copy(), done: make(chan struct{})}
	applied, err := migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: migrate the schema: %w", s.classify(ctx, err))
	}
	for _, m := range applied {
		cfg.Logger.Info("store: applied schema migration", "migration", m)
	}
	var rev uint64
	if err := pool.QueryRow(ctx, "SELECT rev FROM hsmkms_revision").Scan(&rev); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: %w", s.classify(ctx, err))
	}
	s.records = newRecordCache(rev, cfg.MaxStale)
	fctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.follow(fctx)
	return s, nil
}

// View runs fn in a read-only transaction: from the cache while it holds
// every record fn reads, else in a REPEATABLE READ snapshot. fn runs a
// second time, on a fresh snapshot alone, when it read from both and the
// snapshot was newer than the cache.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if rev, ok := s.records.readRev(); ok {
		t := &tx{s: s, ctx: ctx, useCache: true, cacheRev: rev}
		err := s.runView(t, fn)
		if !t.moved {
			return err
		}
	}
	return s.runView(&tx{s: s, ctx: ctx}, fn)
}

func (s *Store) runView(t *tx, fn func(store.Tx) error) error {
	defer t.end()
	err := fn(t)
	if t.err != nil {
		return t.err
	}
	return err
}

// Update runs fn in a REPEATABLE READ transaction and commits it when fn
// returns nil and ctx is live. It runs fn again, after a short random
// wait, when the transaction lost a race with another writer.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := s.updateOnce(ctx, fn)
		if err == nil || !retryable(err) || attempt == maxAttempts {
			return err
		}
		timer := time.NewTimer(retryWait(attempt))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

func (s *Store) updateOnce(ctx context.Context, fn func(store.Tx) error) error {
	t := &tx{s: s, ctx: ctx, write: true}
	defer t.end()
	if err := t.begin(); err != nil {
		return err
	}
	err := fn(t)
	if t.err != nil {
		// A database error ends the transaction, whatever fn made of it.
		return t.err
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rev, err := t.publish()
	if err != nil {
		return t.fail(err)
	}
	if err := t.pg.Commit(t.ctx); err != nil {
		return t.failCommit(err)
	}
	t.pg = nil
	if rev != 0 {
		s.records.wrote(rev, t.touched)
	}
	return nil
}

// Close stops following the feed and closes the connections. Later calls
// return store.ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return store.ErrClosed
	}
	s.stop()
	<-s.done
	s.pool.Close()
	return nil
}

// Revision returns the revision the cache holds, for tests and metrics.
func (s *Store) Revision() uint64 { return s.records.revision() }

// ready reports why a transaction must not start.
func (s *Store) ready(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// retryable reports a transaction that lost a race and may run again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// classify maps a database error: the caller's cancelled context as
// itself, a database that cannot be reached as store.ErrUnavailable, a
// closed store as store.ErrClosed. caller is the context the caller gave.
func (s *Store) classify(caller context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case s.closed.Load():
		return store.ErrClosed
	case caller.Err() != nil:
		return fmt.Errorf("store: %w", caller.Err())
	case unavailable(err):
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return fmt.Errorf("store: database: %w", err)
}

// failCommit classifies a failed COMMIT like fail, and wraps
// store.ErrOutcomeUnknown when the commit may have been made: when it was
// sent (it is not safe to retry) and no answer of the server's came back
// (an answer that is an error means the server rolled it back). A context
// that ends mid-commit is the usual cause: pgx then drops the connection
// with a cancel request that may come too late, so the server may commit
// all the same.
func (t *tx) failCommit(err error) error {
	var pgErr *pgconn.PgError
	known := errors.As(err, &pgErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, pgx.ErrTxCommitRollback) || errors.Is(err, pgx.ErrTxClosed)
	if known {
		return t.fail(err)
	}
	t.err = fmt.Errorf("%w: %w", store.ErrOutcomeUnknown, t.s.classify(t.ctx, err))
	return t.err
}

// unavailable reports an error that says the database cannot be reached
// or is going away, rather than that the request was wrong.
func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		c := pgErr.Code
		// 08: connection exception; 57P0x: shutting down, cannot connect
		// now; 53300: too many connections.
		return strings.HasPrefix(c, "08") || strings.HasPrefix(c, "57P0") || c == "53300"
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "conn closed")
}

// Health reports whether the store is usable now: false, with the reason,
// while the change feed has not been read for longer than MaxStale (the
// database is down or unreachable). It makes no database round trip.
func (s *Store) Health() (bool, string) {
	if s.closed.Load() {
		return false, "the store is closed"
	}
	age := s.records.age()
	if age > s.cfg.MaxStale {
		return false, fmt.Sprintf("the PostgreSQL store has been unreachable for %s", age.Round(100*time.Millisecond))
	}
	return true, ""
}
