-- hsmkms schema 1: one table per record kind, records as the JSON the
-- bolt store keeps, and the change feed that keeps replicas' caches
-- coherent. Identities use the "C" collation so that lists sort by bytes,
-- as the Store contract and the bolt store do.

CREATE TABLE hsmkms_keys (
	id       text COLLATE "C" PRIMARY KEY,
	revision bigint NOT NULL,
	record   bytea  NOT NULL
);

CREATE TABLE hsmkms_versions (
	key_id text COLLATE "C" NOT NULL,
	number bigint NOT NULL,
	record bytea  NOT NULL,
	PRIMARY KEY (key_id, number)
);

CREATE TABLE hsmkms_aliases (
	name   text COLLATE "C" PRIMARY KEY,
	record bytea NOT NULL
);

CREATE TABLE hsmkms_principals (
	access_key_id text COLLATE "C" PRIMARY KEY,
	record        bytea NOT NULL
);

CREATE TABLE hsmkms_settings (
	name  text COLLATE "C" PRIMARY KEY,
	value bytea NOT NULL
);

-- The store's revision: every committed write raises it by one while
-- holding this row, so writes commit in revision order and a snapshot's
-- revision says exactly which changes it holds. pruned_through is the
-- highest revision whose change rows were deleted.
CREATE TABLE hsmkms_revision (
	singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	rev            bigint NOT NULL,
	pruned_through bigint NOT NULL DEFAULT 0
);
INSERT INTO hsmkms_revision (rev) VALUES (0);

-- The change feed: which records each revision wrote, by cache item.
CREATE TABLE hsmkms_changes (
	rev  bigint      NOT NULL,
	item text        COLLATE "C" NOT NULL,
	at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hsmkms_changes_rev ON hsmkms_changes (rev);
