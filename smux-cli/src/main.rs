//! The `smux` command-line tool (being written).

fn main() {
    println!("smux: not yet implemented");
}
