// The receipt's print button (no inline script: the pages' CSP allows only our own files).
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-print]")) {
    button.addEventListener("click", () => window.print());
  }
});

// The IR handheld's export: the chosen file's text goes into the form (the form posts text),
// and its name into the source field when that is still empty. A file chosen before this script
// ran (a quick hand, a browser restoring the form) is read too.
document.addEventListener("DOMContentLoaded", () => {
  const take = async (input) => {
    const file = input.files && input.files[0];
    if (!file) return;
    document.getElementById(input.dataset.into).value = await file.text();
    const source = document.getElementById(input.dataset.nameInto);
    if (source && !source.value) source.value = file.name;
  };
  for (const input of document.querySelectorAll("input[type=file][data-into]")) {
    input.addEventListener("change", () => take(input));
    take(input);
  }
});
