package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// feedChannel is the NOTIFY channel every write announces its revision on.
const feedChannel = "hsmkms_changes"

// follow keeps the cache coherent with the database until ctx ends: it
// listens for writes on its own connection, reads the change feed on each
// notification and at least every PollInterval, and reconnects when the
// connection is lost. While it cannot sync, the cache ages past MaxStale
// and Views read the database.
func (s *Store) follow(ctx context.Context) {
	defer close(s.done)
	wait := 100 * time.Millisecond
	lost := false
	for {
		synced, err := s.followConn(ctx, func() {
			if lost {
				s.cfg.Logger.Info("store: following the PostgreSQL change feed again")
				lost = false
			}
		})
		if ctx.Err() != nil {
			return
		}
		if !lost {
			s.cfg.Logger.Warn("store: lost the PostgreSQL change feed; reading the database until it is back", "error", err)
			lost = true
		}
		if synced {
			wait = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// followConn follows the feed on one connection until it fails. It reports
// whether it synced at least once, and calls onSync after the first sync.
func (s *Store) followConn(ctx context.Context, onSync func()) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	conn, err := pgx.ConnectConfig(cctx, s.listen)
	cancel()
	if err != nil {
		return false, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(cctx)
		cancel()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+feedChannel); err != nil {
		return false, err
	}
	synced := false
	for {
		if err := s.sync(ctx, conn); err != nil {
			return synced, err
		}
		if !synced {
			synced = true
			onSync()
		}
		wctx, cancel := context.WithTimeout(ctx, s.cfg.PollInterval)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return synced, ctx.Err()
		}
		if err != nil && !pgconn.Timeout(err) && !errors.Is(err, context.DeadlineExceeded) {
			return synced, err
		}
	}
}

// sync reads the changes since the cache's revision in one snapshot and
// applies them.
func (s *Store) sync(ctx context.Context, conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	at := time.Now()
	from := s.records.revision()
	rows, err := conn.Query(ctx, `SELECT r.rev, r.pruned_through, c.item FROM hsmkms_revision r
		LEFT JOIN hsmkms_changes c ON c.rev > $1 AND c.rev <= r.rev`, int64(from))
	if err != nil {
		return err
	}
	var rev, pruned uint64
	var items []string
	for rows.Next() {
		var it *string
		if err := rows.Scan(&rev, &pruned, &it); err != nil {
			rows.Close()
			return err
		}
		if it != nil {
			items = append(items, *it)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	s.records.apply(rev, items, from < pruned, at)
	return nil
}
