package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaFiles holds the migrations, schema/NNNN_name.sql, applied in
// order. A migration is never edited once released: a change is a new file.
//
//go:embed schema/*.sql
var schemaFiles embed.FS

// migrateLock is the advisory lock every replica takes to migrate, so that
// replicas starting at the same instant apply each migration once
// ("hsmkms" in ASCII).
const migrateLock = 0x68736d6b6d73

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations by version.
func migrations() ([]migration, error) {
	names, err := fs.Glob(schemaFiles, "schema/*.sql")
	if err != nil {
		return nil, err
	}
	out := make([]migration, 0, len(names))
	for _, path := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(path, "schema/"), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", path)
		}
		b, err := schemaFiles.ReadFile(path)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %d_%s: versions must run 1, 2, … without gaps", m.version, m.name)
		}
	}
	return out, nil
}

// SchemaVersion is the schema version this build migrates a database to.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

// migrate brings the database's schema to this build's version in one
// transaction under migrateLock. It refuses a database migrated by a newer
// hsmkms, whose schema this build does not know.
func migrate(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	return migrateTo(ctx, pool, ms)
}

// migrateTo applies the migrations of ms that the database lacks. ms is
// every migration but for tests, which stop at an older version to check
// that a database made by an older hsmkms upgrades.
func migrateTo(ctx context.Context, pool *pgxpool.Pool, ms []migration) (applied []string, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS hsmkms_schema (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM hsmkms_schema").Scan(&current); err != nil {
			return err
		}
		if current > len(ms) {
			return fmt.Errorf("the database's schema is version %d, newer than this hsmkms knows (%d): run a newer hsmkms", current, len(ms))
		}
		for _, m := range ms[current:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO hsmkms_schema (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
				return err
			}
			applied = append(applied, fmt.Sprintf("%d_%s", m.version, m.name))
		}
		return nil
	})
	return applied, err
}
