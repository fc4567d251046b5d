-- hsmkms schema 2: the external key stores of the XKS proxy API, one
-- record per URI path prefix, compare-and-set on revision as keys are.

CREATE TABLE hsmkms_xks_stores (
	prefix   text COLLATE "C" PRIMARY KEY,
	revision bigint NOT NULL,
	record   bytea  NOT NULL
);
