package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/server"
	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/bolt"
)

// storeCommand moves a single-node install's store into PostgreSQL.
func storeCommand() *cli.Command {
	return &cli.Command{
		Name:  "store",
		Usage: "move the key store between backends",
		Subcommands: []*cli.Command{{
			Name:  "migrate",
			Usage: "copy the embedded store file into a PostgreSQL store (stop the server first)",
			Description: "Copies every key, version, alias, principal and setting of --from into the empty\n" +
				"PostgreSQL database --to, checks the copy record by record, then checks that every\n" +
				"key version the copy names has its object on the token. Nothing is re-encrypted: the\n" +
				"replicas serve the same ciphertexts from the same token.",
			Flags: append(append(tokenFlags(),
				&cli.StringFlag{Name: "from", Required: true, Usage: "the embedded store file, e.g. /var/lib/hsmkms/hsmkms.db"},
				&cli.StringFlag{Name: "to", Required: true, EnvVars: []string{"HSMKMS_STORE"}, Usage: "postgres://… of an empty database"},
			), storePasswordFlags()...),
			Action: storeMigrate,
		}},
	}
}

// migrateReport is what store migrate did.
type migrateReport struct {
	Copied          store.Counts            `json:"copied"`
	Inconsistencies []service.Inconsistency `json:"inconsistencies"`
	OK              bool                    `json:"ok"`
}

func storeMigrate(c *cli.Context) error {
	if !server.IsPostgres(c.String("to")) {
		return usagef("--to must be a URL starting postgres:// or postgresql://")
	}
	if _, err := os.Stat(c.String("from")); err != nil {
		return usagef("--from: %v", err)
	}
	src, err := bolt.Open(c.String("from"))
	if err != nil {
		return fmt.Errorf("opening the embedded store (is the server still running?): %w", err)
	}
	defer src.Close()
	sc, err := storeConfig(c)
	if err != nil {
		return err
	}
	sc.URL = c.String("to")
	dst, err := server.OpenStore(c.Context, sc)
	if err != nil {
		return fmt.Errorf("opening the PostgreSQL store: %w", err)
	}
	defer dst.Close()
	tok, err := openToken(c)
	if err != nil {
		return err
	}
	defer tok.Close()
	var r migrateReport
	if r.Copied, err = store.Copy(c.Context, dst, src); err != nil {
		if errors.Is(err, store.ErrNotEmpty) {
			return cli.Exit("hsmkms: the PostgreSQL store already holds keys, aliases or principals: migrate into an empty database", ExitError)
		}
		return err
	}
	svc, err := service.New(service.Config{Store: dst.Store, HSM: tok, SharedStore: true})
	if err != nil {
		return err
	}
	defer svc.Close()
	if r.Inconsistencies, err = svc.CheckConsistency(c.Context); err != nil {
		return err
	}
	r.OK = len(r.Inconsistencies) == 0
	err = printOut(c, r, func(w io.Writer) {
		row(w, "copied", fmt.Sprintf("%d keys, %d versions, %d aliases, %d principals, %d settings",
			r.Copied.Keys, r.Copied.Versions, r.Copied.Aliases, r.Copied.Principals, r.Copied.Settings))
		for _, in := range r.Inconsistencies {
			row(w, "inconsistent", fmt.Sprintf("%+v", in))
		}
		row(w, "ok", r.OK)
	})
	if err != nil {
		return err
	}
	if !r.OK {
		return cli.Exit("", ExitError)
	}
	return nil
}

// backupCommand takes an online snapshot of a running server's embedded
// store.
func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "write a consistent snapshot of a running server's embedded store to a file",
		Description: "Asks the server for a snapshot of its store (action hsmkms:BackupStore) while it\n" +
			"serves, checks it and writes it with mode 0600. The snapshot holds key records and\n" +
			"sealed secrets, never key material: it decrypts nothing without the token's objects,\n" +
			"which the HSM's own backup keeps. Restore it with hsmkms restore.",
		Flags: append(clientFlags(),
			&cli.StringFlag{Name: "out", Required: true, Usage: "file to write; it must not exist"},
		),
		Action: backup,
	}
}

// backupReport describes a snapshot.
type backupReport struct {
	File    string       `json:"file"`
	Bytes   int64        `json:"bytes"`
	Records store.Counts `json:"records"`
}

func backup(c *cli.Context) error {
	out := c.String("out")
	if _, err := os.Stat(out); err == nil {
		return usagef("--out %s exists: give a new file", out)
	}
	ac, err := adminClient(c)
	if err != nil {
		return err
	}
	ac.HTTP = &http.Client{} // the request's context bounds it, not the client's minute
	tmp, err := os.CreateTemp(filepath.Dir(out), ".hsmkms-backup-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	ctx, cancel := context.WithTimeout(c.Context, 15*time.Minute)
	defer cancel()
	n, err := ac.BackupStore(ctx, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	r := backupReport{File: out, Bytes: n}
	if r.Records, err = bolt.Verify(tmp.Name()); err != nil {
		return fmt.Errorf("the snapshot fails its check, not kept: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	return printOut(c, r, func(w io.Writer) {
		row(w, "file", r.File)
		row(w, "bytes", r.Bytes)
		row(w, "records", fmt.Sprintf("%d keys, %d versions, %d aliases, %d principals", r.Records.Keys, r.Records.Versions, r.Records.Aliases, r.Records.Principals))
	})
}

// restoreCommand puts a snapshot back as a data directory's store.
func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "put a snapshot made by hsmkms backup back as a data directory's store (server stopped)",
		Description: "Checks the snapshot and writes it as <data-dir>/hsmkms.db. An existing store is\n" +
			"refused unless --replace, which keeps it as hsmkms.db.before-restore-<time>. The seal\n" +
			"counts of a snapshot are as old as it: every key is marked to rotate at its next use.\n" +
			"Then run hsmkms doctor: it says whether every key version still has its object on the token.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Required: true, Usage: "the snapshot file"},
			&cli.StringFlag{Name: "data-dir", Value: "/var/lib/hsmkms", EnvVars: []string{"HSMKMS_DATA_DIR"}, Usage: "the server's data directory"},
			&cli.BoolFlag{Name: "replace", Usage: "replace an existing store, keeping it beside the new one"},
		},
		Action: restore,
	}
}

func restore(c *cli.Context) error {
	from, dir := c.String("from"), c.String("data-dir")
	counts, err := bolt.Verify(from)
	if err != nil {
		return fmt.Errorf("the snapshot fails its check: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	dst := filepath.Join(dir, server.BoltFile)
	if _, err := os.Stat(dst); err == nil {
		if !c.Bool("replace") {
			return usagef("%s exists: stop the server and pass --replace to replace it", dst)
		}
		// Opening it proves no server holds it.
		if st, err := bolt.Open(dst); err != nil {
			return fmt.Errorf("the existing store (is the server still running?): %w", err)
		} else {
			st.Close()
		}
		kept := dst + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(dst, kept); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "hsmkms: kept the replaced store as %s\n", kept)
	}
	if err := copyFile(dst, from); err != nil {
		return err
	}
	raised, err := raiseSealCounts(c, dst)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "hsmkms: restored %d keys, %d versions, %d aliases, %d principals into %s; "+
		"%d key versions rotate at their next use (their seal counts are as old as the snapshot); run hsmkms doctor before serving\n",
		counts.Keys, counts.Versions, counts.Aliases, counts.Principals, dst, raised)
	return nil
}

// raiseSealCounts makes every key of the restored store rotate at its next
// seal (service.RaiseSealCounts).
func raiseSealCounts(c *cli.Context, path string) (int, error) {
	st, err := bolt.Open(path)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return service.RaiseSealCounts(c.Context, st, service.DefaultRotateAfterSeals)
}

// copyFile copies src to a new file dst (mode 0600), synced to disk.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}
