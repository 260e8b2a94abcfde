// Prints what pgJDBC reports, one fact per line, for the Rust test to check: DatabaseMetaData,
// server-side prepared statements and fetchSize streaming. A failing call prints
// "error|<what>|<message>" and the program goes on, so one run shows every gap.
// Run with: java -cp /usr/share/java/postgresql.jar Metadata.java JDBC_URL
import java.sql.*;

public class Metadata {
    interface Check {
        void run() throws SQLException;
    }

    static void check(String what, Check check) {
        try {
            check.run();
        } catch (SQLException e) {
            System.out.println("error|" + what + "|" + e.getSQLState() + " " + e.getMessage().replace('\n', ' '));
        }
    }

    static void printColumns(DatabaseMetaData meta, String schema, String table) throws SQLException {
        try (ResultSet columns = meta.getColumns(null, schema, table, "%")) {
            while (columns.next()) {
                String type = columns.getString("TYPE_NAME");
                // A numeric column's precision and scale, as the driver reads them from atttypmod.
                String size = type.equals("numeric")
                    ? "|" + columns.getInt("COLUMN_SIZE") + "|" + columns.getInt("DECIMAL_DIGITS") : "";
                System.out.println("column|" + columns.getString("TABLE_NAME") + "|" + columns.getString("COLUMN_NAME")
                    + "|" + type + size);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        // prepareThreshold=1: the driver switches to a named server-side statement on first reuse.
        try (Connection connection = DriverManager.getConnection(args[0] + "?prepareThreshold=1", "tester", "")) {
            DatabaseMetaData meta = connection.getMetaData();
            check("getDatabaseProductVersion", () -> System.out.println("version|" + meta.getDatabaseMajorVersion()
                + "." + meta.getDatabaseMinorVersion()));
            check("getCatalogs", () -> {
                try (ResultSet catalogs = meta.getCatalogs()) {
                    while (catalogs.next()) System.out.println("catalog|" + catalogs.getString("TABLE_CAT"));
                }
            });
            check("getSchemas", () -> {
                try (ResultSet schemas = meta.getSchemas()) {
                    while (schemas.next()) System.out.println("schema|" + schemas.getString("TABLE_SCHEM"));
                }
            });
            check("getTables", () -> {
                try (ResultSet tables = meta.getTables(null, null, "%", new String[] {"TABLE"})) {
                    while (tables.next()) {
                        System.out.println("table|" + tables.getString("TABLE_SCHEM") + "|" + tables.getString("TABLE_NAME"));
                    }
                }
            });
            check("getColumns", () -> {
                printColumns(meta, "cube", "finance");
                printColumns(meta, "dim", "entity");
            });
            check("getPrimaryKeys", () -> {
                // Cubes and dimensions declare no keys: the call succeeds with no rows.
                try (ResultSet keys = meta.getPrimaryKeys(null, "dim", "entity")) {
                    int rows = 0;
                    while (keys.next()) rows++;
                    System.out.println("primaryKeys|entity|" + rows);
                }
            });
            check("getIndexInfo", () -> {
                try (ResultSet indexes = meta.getIndexInfo(null, "dim", "entity", false, true)) {
                    int rows = 0;
                    while (indexes.next()) rows++;
                    System.out.println("indexes|entity|" + rows);
                }
            });
            check("getImportedKeys", () -> {
                try (ResultSet keys = meta.getImportedKeys(null, "cube", "finance")) {
                    int rows = 0;
                    while (keys.next()) rows++;
                    System.out.println("importedKeys|finance|" + rows);
                }
            });
            check("getTypeInfo", () -> {
                try (ResultSet types = meta.getTypeInfo()) {
                    while (types.next()) {
                        String name = types.getString("TYPE_NAME");
                        if (name.equals("int4") || name.equals("text") || name.equals("numeric") || name.equals("_int4")) {
                            System.out.println("type|" + name + "|" + types.getInt("DATA_TYPE"));
                        }
                    }
                }
            });
            check("prepared", () -> {
                try (PreparedStatement lookup = connection.prepareStatement("SELECT parent FROM dim.entity WHERE code = ?")) {
                    for (String code : new String[] {"DE", "EMEA", "US_EAST"}) {
                        lookup.setString(1, code);
                        try (ResultSet row = lookup.executeQuery()) {
                            row.next();
                            System.out.println("prepared|" + code + "|" + row.getString(1));
                        }
                    }
                }
            });
            check("fetchSize", () -> {
                // A cursor-backed fetch: Execute with a row limit, portal suspended between batches.
                connection.setAutoCommit(false);
                try (Statement statement = connection.createStatement()) {
                    statement.setFetchSize(100);
                    long rows = 0;
                    try (ResultSet cells = statement.executeQuery("SELECT entity, amount FROM cube.finance")) {
                        while (cells.next()) rows++;
                    }
                    System.out.println("streamed|" + rows);
                }
                connection.commit();
                connection.setAutoCommit(true);
            });
        }
    }
}
