-- Whether migration V5 gave count.methods its series columns: a library
-- newer than the schema (a package upgraded before `count migrate`) keeps
-- counting old clients' requests, under the endpoints' queries, until then.
SELECT EXISTS (SELECT 1 FROM pg_attribute
                WHERE attrelid = 'count.methods'::regclass AND attname = 'status_code' AND NOT attisdropped)
