// Prints what pgJDBC's DatabaseMetaData reports, one fact per line, for the Rust test to check.
// Run with: java -cp /usr/share/java/postgresql.jar Metadata.java JDBC_URL
import java.sql.*;

public class Metadata {
    public static void main(String[] args) throws Exception {
        try (Connection connection = DriverManager.getConnection(args[0], "tester", "")) {
            DatabaseMetaData meta = connection.getMetaData();
            try (ResultSet tables = meta.getTables(null, null, "%", new String[] {"TABLE"})) {
                while (tables.next()) {
                    System.out.println("table|" + tables.getString("TABLE_SCHEM") + "|" + tables.getString("TABLE_NAME"));
                }
            }
            try (ResultSet columns = meta.getColumns(null, "cube", "finance", "%")) {
                while (columns.next()) {
                    System.out.println("column|" + columns.getString("TABLE_NAME") + "|" + columns.getString("COLUMN_NAME")
                        + "|" + columns.getString("TYPE_NAME"));
                }
            }
            try (ResultSet columns = meta.getColumns(null, "dim", "entity", "%")) {
                while (columns.next()) {
                    System.out.println("column|" + columns.getString("TABLE_NAME") + "|" + columns.getString("COLUMN_NAME")
                        + "|" + columns.getString("TYPE_NAME"));
                }
            }
        }
    }
}
