package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hsmkms/hsmkms/service/server"
)

const allowInsecureStorePasswordFile = "allow-insecure-store-password-file"

// storeFlags name the store: the embedded file under --data-dir by
// default, or a PostgreSQL database shared by replicas.
func storeFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "store", EnvVars: []string{"HSMKMS_STORE"},
			Usage: "postgres://user@host:port/db?sslmode=verify-full for a PostgreSQL store shared by replicas (PG* variables fill in the rest); empty for the embedded file under --data-dir"},
	}, storePasswordFlags()...)
}

// storePasswordFlags say where the PostgreSQL password comes from.
func storePasswordFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "store-password-file", EnvVars: []string{"HSMKMS_STORE_PASSWORD_FILE"},
			Usage: "file holding the PostgreSQL password (else the URL's, PGPASSWORD or PGPASSFILE)"},
		&cli.BoolFlag{Name: allowInsecureStorePasswordFile, EnvVars: []string{"HSMKMS_ALLOW_INSECURE_STORE_PASSWORD_FILE"},
			Usage: "read a store password file that group or others can access (refused by default)"},
	}
}

// storeConfig reads the store flags.
func storeConfig(c *cli.Context) (server.StoreConfig, error) {
	cfg := server.StoreConfig{URL: c.String("store"), DataDir: c.String("data-dir"), Logger: logger(c).Named("store")}
	if cfg.URL != "" && cfg.URL != "bolt" && !server.IsPostgres(cfg.URL) {
		// The value is not repeated: it may hold a password.
		return cfg, cli.Exit("hsmkms: --store must be a URL starting postgres:// or postgresql://, or empty for the embedded store", ExitUsage)
	}
	f := c.String("store-password-file")
	if f == "" {
		return cfg, nil
	}
	if !c.Bool(allowInsecureStorePasswordFile) {
		if err := checkPrivateFile(f, "store password", allowInsecureStorePasswordFile); err != nil {
			return cfg, err
		}
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return cfg, cli.Exit(fmt.Sprintf("hsmkms: reading the store password file: %v", err), ExitUsage)
	}
	cfg.Password = strings.TrimRight(string(b), "\r\n")
	if cfg.Password == "" {
		return cfg, cli.Exit("hsmkms: the store password file "+f+" is empty", ExitUsage)
	}
	return cfg, nil
}

// openStore opens the store the flags name, for commands that use it
// directly.
func openStore(c *cli.Context) (server.OpenedStore, error) {
	cfg, err := storeConfig(c)
	if err != nil {
		return server.OpenedStore{}, err
	}
	if cfg.URL == "" || cfg.URL == "bolt" {
		// A local command reads the server's store; it never makes one
		// where a mistyped --data-dir points.
		path := filepath.Join(cfg.DataDir, server.BoltFile)
		if _, err := os.Stat(path); err != nil {
			return server.OpenedStore{}, cli.Exit(fmt.Sprintf("hsmkms: no store at %s (%v): --data-dir is the server's data directory (serve --dev keeps it in <dev dir>/data)",
				path, unwrapPath(err)), ExitNotFound)
		}
	}
	st, err := server.OpenStore(c.Context, cfg)
	if err != nil {
		return st, fmt.Errorf("opening the store: %w", err)
	}
	return st, nil
}
