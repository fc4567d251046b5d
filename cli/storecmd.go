package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
			return cli.Exit("hsmkms: the PostgreSQL store already holds keys or other records (aliases, principals, grants, settings): migrate into an empty database", ExitError)
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
	if r.Records, err = verifySnapshot(c.Context, tmp.Name()); err != nil {
		return fmt.Errorf("the snapshot fails its check, not kept: %w", err)
	}
	// Never replaces: --out must be new, and a file that appeared there
	// during the download is kept (publish).
	if err := publish(tmp.Name(), out, false); err != nil {
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
			"A deletion in the snapshot may have been cancelled since: every key pending deletion\n" +
			"is given a deletion date at least 7 days away, so that it can still be cancelled.\n" +
			"The store is made beside the old one and renamed into place only when complete.\n" +
			"Then run hsmkms doctor: it says whether every key version still has its object on the token.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Required: true, Usage: "the snapshot file"},
			&cli.StringFlag{Name: "data-dir", Value: "/var/lib/hsmkms", EnvVars: []string{"HSMKMS_DATA_DIR"}, Usage: "the server's data directory"},
			&cli.BoolFlag{Name: "replace", Usage: "replace an existing store, keeping it beside the new one"},
		},
		Action: restore,
	}
}

// prepareFunc adjusts a restored store before it is put in place.
type prepareFunc func(context.Context, store.Store, time.Time) (service.RestoreAdjustments, error)

// metaPrepareRestored is the App.Metadata key under which a test gives
// restore a prepareFunc of its own, to make the step fail.
const metaPrepareRestored = "hsmkms.prepareRestoredStore"

// prepareOf is the prepareFunc restore uses: service.PrepareRestoredStore
// unless a test set another.
func prepareOf(c *cli.Context) prepareFunc {
	if f, ok := c.App.Metadata[metaPrepareRestored].(prepareFunc); ok {
		return f
	}
	return service.PrepareRestoredStore
}

// restore writes the snapshot to a temporary file in the data directory,
// adjusts it there and renames it into place, so that a crash or a failed
// step leaves either the old store or the complete new one as hsmkms.db,
// never a part-written or unadjusted one. Only the embedded store is
// restored: a PostgreSQL store is restored with PostgreSQL's own tools.
func restore(c *cli.Context) error {
	from, dir := c.String("from"), c.String("data-dir")
	// Checked here to refuse a bad snapshot before anything else, and
	// again as copied (restoreToTemp).
	if _, err := verifySnapshot(c.Context, from); err != nil {
		return fmt.Errorf("the snapshot fails its check: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	dst := filepath.Join(dir, server.BoltFile)
	replacing := false
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
		replacing = true
	}
	tmp, counts, adj, err := restoreToTemp(c.Context, dir, from, prepareOf(c))
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // nothing to remove once renamed
	if replacing {
		kept := dst + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
		if err := keepAside(dst, kept); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "hsmkms: kept the replaced store as %s\n", kept)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("the store is restored but its directory is not synced: %w", err)
	}
	fmt.Fprintf(c.App.ErrWriter, "hsmkms: restored %d keys, %d versions, %d aliases, %d principals into %s; "+
		"%d key versions rotate at their next use (their seal counts are as old as the snapshot); "+
		"%d keys pending deletion now have the deletion date %s (the snapshot may hold deletions cancelled since: cancel them again before then); "+
		"run hsmkms doctor before serving\n",
		counts.Keys, counts.Versions, counts.Aliases, counts.Principals, dst, adj.SealCountsRaised,
		adj.DeletionsPostponed, adj.DeletionNotBefore.Format(time.RFC3339))
	return nil
}

// restoreToTemp copies the snapshot at from into a new temporary file in
// dir, checks the copy, and makes the restore's adjustments there
// (prepare), synced to disk. It returns the file's path, which the caller
// renames or removes, and the copy's record counts; on error it removes
// the file itself.
func restoreToTemp(ctx context.Context, dir, from string, prepare prepareFunc) (path string, counts store.Counts, adj service.RestoreAdjustments, err error) {
	f, err := os.CreateTemp(dir, "."+server.BoltFile+".restore-*")
	if err != nil {
		return "", counts, adj, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := copyInto(f, from); err != nil {
		return "", counts, adj, err
	}
	// The copy is what is put in place: it is checked itself, since the
	// file read before may have changed since (found by review).
	if counts, err = verifySnapshot(ctx, tmp); err != nil {
		return "", counts, adj, fmt.Errorf("the snapshot fails its check: %w", err)
	}
	st, err := bolt.Open(tmp)
	if err != nil {
		return "", counts, adj, err
	}
	adj, err = prepare(ctx, st, time.Now())
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", counts, adj, fmt.Errorf("adjusting the restored store (nothing was put in place): %w", err)
	}
	// bbolt syncs its commits; syncing again costs little and does not
	// depend on its options.
	if err := syncFile(tmp); err != nil {
		return "", counts, adj, err
	}
	return tmp, counts, adj, nil
}

// keepAside gives the store file dst the name kept as well, so that
// renaming the new store over dst leaves no moment without an hsmkms.db. A
// file system without hard links has it renamed instead.
func keepAside(dst, kept string) error {
	err := os.Link(dst, kept)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Rename(dst, kept)
}

// copyInto copies the file src into out, syncs and closes out.
func copyInto(out *os.File, src string) error {
	in, err := os.Open(src)
	if err != nil {
		out.Close()
		return err
	}
	defer in.Close()
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncFile syncs the file at path to disk.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir syncs a directory, so that a rename in it survives a crash.
func syncDir(dir string) error { return syncFile(dir) }
