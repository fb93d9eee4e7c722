public enum Converters {}
