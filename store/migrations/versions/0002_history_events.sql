-- Every history row written or updated is announced, so that subscribers see it at commit.
CREATE FUNCTION announce_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchover_history', NEW.seq::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER deployment_history_announced
    AFTER INSERT OR UPDATE ON deployment_history
    FOR EACH ROW EXECUTE FUNCTION announce_history();
