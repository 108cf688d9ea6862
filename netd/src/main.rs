fn main() {
    println!("netd");
}
