// Java row of the driver matrix: pgjdbc (Debian's libpostgresql-jdbc-java).
//
// Compiled and run by tests/drivers.rs with the connection in PGV_*
// variables; prints one `RESULT {json}` line per feature.

import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.sql.*;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.Arrays;
import java.util.Properties;
import java.util.TimeZone;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;

public class JdbcDrivers {
    static final String COLS = "t, v, d, ts, i4, i8, n, b, bi, note";
    static final String TBL = "drv_pgjdbc";
    static final LocalDate D = LocalDate.of(1990, 1, 2);
    static final OffsetDateTime TS = OffsetDateTime.of(2024, 5, 6, 7, 8, 9, 123456000, ZoneOffset.UTC);
    static final byte[] BI = {0, 1, (byte) 0xfe, (byte) 0xff};
    static String version = "?";

    interface Check { String run() throws Exception; }

    static class Refused extends Exception {
        Refused(String m) { super(m); }
    }

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static void report(String feature, String status, String detail) {
        if (detail == null) detail = "";
        if (detail.length() > 600) detail = detail.substring(0, 600);
        System.out.println("RESULT {\"driver\":\"pgjdbc\",\"version\":" + json(version) + ",\"feature\":"
                + json(feature) + ",\"status\":" + json(status) + ",\"detail\":" + json(detail) + "}");
        System.out.flush();
    }

    static void check(String feature, Check c) {
        try {
            report(feature, "pass", c.run());
        } catch (Refused r) {
            report(feature, "refused", r.getMessage());
        } catch (Throwable e) {
            StringWriter w = new StringWriter();
            e.printStackTrace(new java.io.PrintWriter(w));
            report(feature, "fail", e + " " + w.toString().replace('\n', ' '));
        }
    }

    static Connection connect(String user) throws SQLException {
        return connect(user, new Properties());
    }

    static Connection connect(String user, Properties p) throws SQLException {
        p.setProperty("user", user);
        p.setProperty("password", System.getenv("PGV_PW"));
        String url = "jdbc:postgresql://" + System.getenv("PGV_HOST") + ":" + System.getenv("PGV_PORT") + "/"
                + System.getenv("PGV_DB");
        return DriverManager.getConnection(url, p);
    }

    static void expect(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static void setRow(PreparedStatement ps, int id) throws SQLException {
        ps.setInt(1, id);
        ps.setString(2, "alice@example.com");
        ps.setString(3, "bob@example.org");
        ps.setDate(4, java.sql.Date.valueOf(D)); // sent as "1990-01-02 +00" (issue 11 defect 3)
        ps.setObject(5, TS);
        ps.setInt(6, 12344);
        ps.setLong(7, 9007199254740993L);
        ps.setBigDecimal(8, new BigDecimal("12345.678"));
        ps.setBoolean(9, true);
        ps.setBytes(10, BI);
        ps.setString(11, "row one");
    }

    static String rowText(ResultSet r) throws SQLException {
        return r.getString(1) + "|" + r.getString(2) + "|" + r.getObject(3, LocalDate.class) + "|"
                + r.getObject(4, OffsetDateTime.class).withOffsetSameInstant(ZoneOffset.UTC) + "|" + r.getInt(5)
                + "|" + r.getLong(6) + "|" + r.getBigDecimal(7).toPlainString() + "|" + r.getBoolean(8) + "|"
                + Arrays.toString(r.getBytes(9)) + "|" + r.getString(10);
    }

    static final String WANT = "alice@example.com|bob@example.org|1990-01-02|2024-05-06T07:08:09.123456Z|12344"
            + "|9007199254740993|12345.678|true|[0, 1, -2, -1]|row one";
    static final String MASKED = "a****@*******.***|b**@example.org|1990-01-01|2024-05-01T00:00Z|12340"
            + "|9007199254741000|12350|false|[]|r** ***";

    public static void main(String[] args) throws Exception {
        TimeZone.setDefault(TimeZone.getTimeZone("UTC"));
        Connection c = connect(System.getenv("PGV_ADMIN"));
        version = c.getMetaData().getDriverVersion();
        String ph = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";
        String sel = "SELECT " + COLS + " FROM " + TBL + " WHERE id = ?";

        check("params", () -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + TBL + " (id, " + COLS + ") VALUES (" + ph + ")")) {
                setRow(ps, 1);
                ps.executeUpdate();
            }
            try (PreparedStatement ps = c.prepareStatement(sel)) {
                ps.setInt(1, 1);
                ResultSet r = ps.executeQuery();
                expect(r.next(), "no row");
                String got = rowText(r);
                expect(got.equals(WANT), got);
            }
            return "";
        });
        check("batch", () -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + TBL + " (id, " + COLS + ") VALUES (" + ph + ")")) {
                for (int i = 2; i < 7; i++) {
                    setRow(ps, i);
                    ps.addBatch();
                }
                int[] n = ps.executeBatch();
                expect(n.length == 5, "batch counts " + Arrays.toString(n));
            }
            return "executeBatch with setString declared as varchar (issue 11 defect 2)";
        });
        check("lookup", () -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM " + TBL + " WHERE t = ? AND i4 = ?")) {
                ps.setString(1, "alice@example.com");
                ps.setInt(2, 12344);
                ResultSet r = ps.executeQuery();
                r.next();
                expect(r.getInt(1) == 6, "count " + r.getInt(1));
            }
            return "";
        });
        check("server_prepared", () -> {
            try (PreparedStatement ps = c.prepareStatement(sel)) {
                for (int i = 0; i < 8; i++) {
                    ps.setInt(1, 1 + i % 6);
                    ResultSet r = ps.executeQuery();
                    expect(r.next(), "no row");
                    String got = rowText(r);
                    expect(got.equals(WANT), "execution " + i + ": " + got);
                }
                expect(ps.unwrap(PGStatement.class).isUseServerPrepare(), "not server-prepared");
            }
            return "named statement and binary results after prepareThreshold (5)";
        });
        check("binary", () -> {
            Properties p = new Properties();
            p.setProperty("prepareThreshold", "-1"); // server-prepared and binary from the first execution
            try (Connection b = connect(System.getenv("PGV_ADMIN"), p); PreparedStatement ps = b.prepareStatement(sel)) {
                ps.setInt(1, 1);
                ResultSet r = ps.executeQuery();
                expect(r.next(), "no row");
                String got = rowText(r);
                expect(got.equals(WANT), got);
            }
            return "prepareThreshold=-1: binary transfer from the first execution";
        });
        check("metadata", () -> {
            try (PreparedStatement ps = c.prepareStatement(sel + " AND t = ?")) {
                ResultSetMetaData md = ps.getMetaData();
                StringBuilder types = new StringBuilder();
                for (int i = 1; i <= md.getColumnCount(); i++) types.append(md.getColumnTypeName(i)).append(',');
                String want = "text,varchar,date,timestamptz,int4,int8,numeric,bool,bytea,text,";
                expect(types.toString().equals(want), "columns " + types);
                ParameterMetaData pm = ps.getParameterMetaData();
                String pt = pm.getParameterTypeName(1) + "," + pm.getParameterTypeName(2);
                expect(pt.equals("int4,text"), "parameters " + pt);
            }
            return "ResultSetMetaData and ParameterMetaData";
        });
        CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
        check("copy_in", () -> {
            long n = cm.copyIn("COPY " + TBL + " (id, t, d, i4, note) FROM STDIN",
                    new StringReader("20\tcopy@example.com\t1990-01-02 +00\t7\tcopied\n"));
            expect(n == 1, "copied " + n);
            try (Statement s = c.createStatement()) {
                ResultSet r = s.executeQuery("SELECT t, d, i4 FROM " + TBL + " WHERE id = 20");
                r.next();
                String got = r.getString(1) + "|" + r.getObject(2, LocalDate.class) + "|" + r.getInt(3);
                expect(got.equals("copy@example.com|1990-01-02|7"), got);
            }
            return "";
        });
        check("copy_out", () -> {
            StringWriter w = new StringWriter();
            cm.copyOut("COPY (SELECT id, t, d FROM " + TBL + " WHERE id IN (1, 20) ORDER BY id) TO STDOUT", w);
            String want = "1\talice@example.com\t1990-01-02\n20\tcopy@example.com\t1990-01-02\n";
            expect(w.toString().equals(want), w.toString());
            return "";
        });
        check("cancel", () -> {
            try (Statement s = c.createStatement()) {
                Thread t = new Thread(() -> {
                    try { Thread.sleep(300); s.cancel(); } catch (Exception e) { /* reported below */ }
                });
                t.start();
                try {
                    s.execute("SELECT pg_sleep(20)");
                    throw new AssertionError("not cancelled");
                } catch (SQLException e) {
                    expect("57014".equals(e.getSQLState()), "state " + e.getSQLState());
                }
                t.join();
                expect(s.execute("SELECT 1"), "not usable after cancel");
            }
            return "";
        });
        check("notify", () -> {
            try (Connection l = connect(System.getenv("PGV_ADMIN")); Statement ls = l.createStatement();
                 Statement s = c.createStatement()) {
                ls.execute("LISTEN drv_pgjdbc");
                s.execute("NOTIFY drv_pgjdbc, 'hello pgjdbc'");
                PGNotification[] ns = l.unwrap(PGConnection.class).getNotifications(10000);
                expect(ns != null && ns.length == 1 && ns[0].getParameter().equals("hello pgjdbc"), "no notification");
            }
            return "";
        });
        check("masked", () -> {
            try (Connection m = connect(System.getenv("PGV_MASK")); PreparedStatement ps = m.prepareStatement(sel)) {
                for (int i = 0; i < 7; i++) { // text, then binary once server-prepared
                    ps.setInt(1, 1);
                    ResultSet r = ps.executeQuery();
                    expect(r.next(), "no row");
                    String got = rowText(r);
                    expect(got.equals(MASKED), "execution " + i + ": " + got);
                }
            }
            return "text and (after prepareThreshold) binary results";
        });
        c.close();
    }
}
