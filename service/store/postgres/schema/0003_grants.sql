-- hsmkms schema 3: grants, one record per grant, named by its key's ID,
-- "/" and the grant's ID so that a key's grants list together.

CREATE TABLE hsmkms_grants (
	ref    text COLLATE "C" PRIMARY KEY,
	record bytea NOT NULL
);
