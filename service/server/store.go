package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/bolt"
	"github.com/hsmkms/hsmkms/service/store/postgres"
)

// StoreConfig names a store: the embedded bbolt file under DataDir (URL ""
// or "bolt"), or a PostgreSQL database shared by replicas (URL
// postgres://… or postgresql://…; libpq's PG* variables fill in what it
// leaves out).
type StoreConfig struct {
	URL      string
	Password string // replaces the URL's, when set
	DataDir  string
	Logger   hclog.Logger
}

// BoltFile is the embedded store's file name under the data directory.
const BoltFile = "hsmkms.db"

// IsPostgres reports whether url names a PostgreSQL store.
func IsPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// OpenedStore is an open store and how to ask whether it is usable now.
type OpenedStore struct {
	store.Store
	// Health reports whether the store can be used now, and why not; the
	// embedded store always can.
	Health func() (bool, string)
	// Shared says several processes may use the store at once.
	Shared bool
}

// OpenStore opens the store cfg names. Its errors never show a password:
// the URL is not repeated.
func OpenStore(ctx context.Context, cfg StoreConfig) (OpenedStore, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	switch {
	case cfg.URL == "" || cfg.URL == "bolt":
		if cfg.DataDir == "" {
			return OpenedStore{}, errors.New("server: a data directory is required for the embedded store")
		}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return OpenedStore{}, fmt.Errorf("server: %w", err)
		}
		st, err := bolt.Open(filepath.Join(cfg.DataDir, BoltFile))
		if err != nil {
			return OpenedStore{}, err
		}
		return OpenedStore{Store: st, Health: func() (bool, string) { return true, "" }}, nil
	case IsPostgres(cfg.URL):
		st, err := postgres.Open(ctx, postgres.Config{URL: cfg.URL, Password: cfg.Password, Logger: cfg.Logger})
		if err != nil {
			return OpenedStore{}, err
		}
		return OpenedStore{Store: st, Health: st.Health, Shared: true}, nil
	}
	return OpenedStore{}, errors.New("server: the store must be empty or \"bolt\" (the embedded file under the data directory) or a URL starting postgres:// or postgresql://")
}
