package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/postgres/pgtest"
)

// TestCommitOutcome makes COMMIT itself slow or failing, with a deferred
// constraint trigger on the settings table, and checks what Update says.
// A context that ends while the server commits leaves the outcome unknown
// (store.ErrOutcomeUnknown, beside the context's error): here the change
// lands, because the slow trigger sleeps through the cancel request pgx
// sends as it drops the connection, as a server does once its commit
// record is written. A commit the server refuses is a plain failure that
// changed nothing.
func TestCommitOutcome(t *testing.T) {
	srv := pgtest.Start(t)
	s := openDB(t, srv, Config{})
	if _, err := s.pool.Exec(context.Background(), `
		CREATE FUNCTION test_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.name LIKE 'slow/%' THEN
				BEGIN
					PERFORM pg_sleep(1.5);
				EXCEPTION WHEN query_canceled THEN
					NULL;
				END;
			END IF;
			IF NEW.name = 'refused' THEN RAISE EXCEPTION 'refused at commit'; END IF;
			RETURN NULL;
		END $$;
		CREATE CONSTRAINT TRIGGER test_commit AFTER INSERT OR UPDATE ON hsmkms_settings
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_commit();`); err != nil {
		t.Fatal(err)
	}
	const short = 300 * time.Millisecond // well inside the trigger's sleep
	for _, tc := range []struct {
		name    string
		setting string
		ctx     func() (context.Context, context.CancelFunc)
		want    error // besides store.ErrOutcomeUnknown when unknown
		unknown bool
	}{
		{"deadline mid-commit", "slow/deadline",
			func() (context.Context, context.CancelFunc) { return context.WithTimeout(context.Background(), short) },
			context.DeadlineExceeded, true},
		{"cancelled mid-commit", "slow/cancel",
			func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(short, cancel)
				return ctx, cancel
			},
			context.Canceled, true},
		{"refused at commit", "refused",
			func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), time.Minute)
			},
			nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			err := s.Update(ctx, func(tx store.Tx) error { return tx.PutSetting(tc.setting, []byte("v")) })
			if err == nil {
				t.Fatal("Update succeeded, want an error")
			}
			if got := errors.Is(err, store.ErrOutcomeUnknown); got != tc.unknown {
				t.Errorf("Update: %v; wraps store.ErrOutcomeUnknown: %v, want %v", err, got, tc.unknown)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Update: %v, want it to wrap %v", err, tc.want)
			}
			// The server finishes the commit it was sent (an unknown
			// outcome), or has rolled it back (a refusal).
			var n int
			for deadline := time.Now().Add(10 * time.Second); ; {
				if err := s.pool.QueryRow(context.Background(),
					"SELECT count(*) FROM hsmkms_settings WHERE name = $1", tc.setting).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n == 1 || !tc.unknown || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if committed := n == 1; committed != tc.unknown {
				t.Errorf("the setting committed: %v, want %v", committed, tc.unknown)
			}
		})
	}
}
